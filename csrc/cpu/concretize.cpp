// CPU op of box concretisation: min over lower <= x <= upper of A . x + bias = A . c - |A| . r + bias, one pass
// over A per row, without materialising |A| (the reference makes two products and an |A| copy). This file
// checks the operands and splits the rows among threads; rows_impl.h has the arithmetic.
#include <vector>

#include "../kernels.h"
#include "rows.h"

namespace verifier_kernels {
namespace {

Tensor concretize_box_cpu(Tensor A, std::optional<Tensor> bias, Tensor lower, Tensor upper) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "concretize_box: A must be a contiguous [b, K, N]");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, &upper, bias ? &*bias : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows});
  auto run = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    ConcretizeArgs<T> p{};
    p.a = data<T>(A);
    p.a_layout = row_layout(A, A, batch, rows, n, "A");
    p.box_layout = neuron_layout(lower, A, batch, n, "lower");
    const RowLayout upper_layout = neuron_layout(upper, A, batch, n, "upper");
    STD_TORCH_CHECK(upper_layout.batch_stride == p.box_layout.batch_stride,
                    "concretize_box: lower and upper must have one shape");
    p.lower = data<T>(lower);
    p.upper = data<T>(upper);
    if (bias) {
      p.bias = data<T>(*bias);
      p.bias_batch_stride = neuron_layout(*bias, A, batch, rows, "bias").batch_stride;
    }
    p.out = mutable_data<T>(out);
    p.rows = rows;
    p.n = n;
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, batch * rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(static_cast<size_t>(2 * n));
      kernels.concretize(p, begin, end, scratch.data());
    });
  };
  if (is_float(A)) {
    run(float(0));
  } else {
    run(double(0));
  }
  return out;
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("concretize_box", TORCH_BOX(&verifier_kernels::concretize_box_cpu));
}
