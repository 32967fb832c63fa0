// CPU op of box concretisation: min over lower <= x <= upper of A . x + bias = A . c - |A| . r + bias, one pass
// over A per row, without materialising |A| (the reference makes two products and an |A| copy). This file
// checks the operands and splits the rows among threads; rows_impl.h has the arithmetic.
#include <vector>

#include "../kernels.h"
#include "rows.h"

namespace verifier_kernels {
namespace {

Tensor concretize_box_cpu(Tensor A, std::optional<Tensor> bias, Tensor lower, Tensor upper) {
  const RowsCall call = prepare_concretize(A, bias, lower, upper);
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ConcretizeArgs<T> p = concretize_args<T>(call, A, bias, lower, upper);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, call.batch * call.rows, grain_rows(call.n), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(static_cast<size_t>(2 * call.n));
      kernels.concretize(p, begin, end, scratch.data());
    });
  });
  return call.out;
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("concretize_box", TORCH_BOX(&verifier_kernels::concretize_box_cpu));
}
