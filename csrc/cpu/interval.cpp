// CPU op of the IBP step through a dense layer y = x W^T + b (Gowal et al. 2018, interval bound propagation):
// centre and radius of the input boxes in one pass, the two products W c and |W| r by BLAS (through the
// dispatcher), and the output boxes c' -+ r' formed in place in one pass.
#include "../kernels.h"
#include "rows.h"

namespace verifier_kernels {
namespace {

std::tuple<Tensor, Tensor> interval_linear_cpu(Tensor lower, Tensor upper, Tensor weight, Tensor weight_abs,
                                               std::optional<Tensor> bias) {
  check_floating(lower);
  STD_TORCH_CHECK(lower.dim() == 2 && upper.dim() == 2, "interval_linear: boxes must be [M, n]");
  STD_TORCH_CHECK(lower.size(0) == upper.size(0) && lower.size(1) == upper.size(1),
                  "interval_linear: lower and upper must have one shape");
  STD_TORCH_CHECK(weight.dim() == 2 && weight_abs.dim() == 2 && weight.size(1) == lower.size(1) &&
                      weight_abs.size(0) == weight.size(0) && weight_abs.size(1) == weight.size(1),
                  "interval_linear: weight and weight_abs must be [out, n]");
  STD_TORCH_CHECK(lower.is_contiguous() && upper.is_contiguous(), "interval_linear: boxes must be contiguous");
  STD_TORCH_CHECK(weight.scalar_type() == lower.scalar_type() && weight_abs.scalar_type() == lower.scalar_type() &&
                      upper.scalar_type() == lower.scalar_type(),
                  "interval_linear: all operands must have one dtype");
  const int64_t boxes = lower.size(0);
  const int64_t outputs = weight.size(0);
  if (bias) {
    STD_TORCH_CHECK(bias->dim() == 1 && bias->size(0) == outputs && bias->is_contiguous() &&
                        bias->scalar_type() == lower.scalar_type(),
                    "interval_linear: bias must be a contiguous [out] vector");
  }
  Tensor center = torch::stable::new_empty(lower, {boxes, lower.size(1)});
  Tensor radius = torch::stable::new_empty(lower, {boxes, lower.size(1)});
  const int64_t total = lower.numel();
  auto split = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, total, 32768, [&](int64_t begin, int64_t end) {
      kernels.center_radius(data<T>(lower), data<T>(upper), mutable_data<T>(center), mutable_data<T>(radius), begin,
                            end);
    });
  };
  if (is_float(lower)) {
    split(float(0));
  } else {
    split(double(0));
  }
  Tensor out_center = torch::stable::contiguous(torch::stable::matmul(center, torch::stable::transpose(weight, 0, 1)));
  Tensor out_radius =
      torch::stable::contiguous(torch::stable::matmul(radius, torch::stable::transpose(weight_abs, 0, 1)));
  auto finish = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const T* b = data_or_null<T>(bias);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, boxes, grain_rows(outputs), [&](int64_t begin, int64_t end) {
      kernels.interval(mutable_data<T>(out_center), mutable_data<T>(out_radius), b, outputs, begin, end);
    });
  };
  if (is_float(lower)) {
    finish(float(0));
  } else {
    finish(double(0));
  }
  return {out_center, out_radius};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("interval_linear", TORCH_BOX(&verifier_kernels::interval_linear_cpu));
}
