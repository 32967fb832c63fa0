// CPU op of the IBP step through a dense layer y = x W^T + b (Gowal et al. 2018, interval bound propagation):
// centre and radius of the input boxes in one pass, the two products W c and |W| r by BLAS (through the
// dispatcher), and the output boxes c' -+ r' formed in place in one pass.
#include "../kernels.h"
#include "rows.h"

namespace verifier_kernels {
namespace {

std::tuple<Tensor, Tensor> interval_linear_cpu(Tensor lower, Tensor upper, Tensor weight, Tensor weight_abs,
                                               std::optional<Tensor> bias) {
  check_interval_linear(lower, upper, weight, weight_abs, bias);
  const int64_t boxes = lower.size(0);
  const int64_t outputs = weight.size(0);
  Tensor center = torch::stable::new_empty(lower, {boxes, lower.size(1)});
  Tensor radius = torch::stable::new_empty(lower, {boxes, lower.size(1)});
  const int64_t total = lower.numel();
  dispatch_floating(lower, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, total, 32768, [&](int64_t begin, int64_t end) {
      kernels.center_radius(data<T>(lower), data<T>(upper), mutable_data<T>(center), mutable_data<T>(radius), begin,
                            end);
    });
  });
  Tensor out_center = torch::stable::contiguous(torch::stable::matmul(center, torch::stable::transpose(weight, 0, 1)));
  Tensor out_radius =
      torch::stable::contiguous(torch::stable::matmul(radius, torch::stable::transpose(weight_abs, 0, 1)));
  dispatch_floating(lower, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const T* b = data_or_null<T>(bias);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, boxes, grain_rows(outputs), [&](int64_t begin, int64_t end) {
      kernels.interval(mutable_data<T>(out_center), mutable_data<T>(out_radius), b, outputs, begin, end);
    });
  });
  return {out_center, out_radius};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("interval_linear", TORCH_BOX(&verifier_kernels::interval_linear_cpu));
}
