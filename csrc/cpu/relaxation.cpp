// CPU ops of the CROWN backward step through an elementwise relaxation (relaxed_backward) and through a ReLU
// whose relaxation is formed on the fly from the pre-activation bounds (relu_backward).
//
// One pass over A per row: the positive/negative split, the slope selection and the intercept sum happen in
// registers, so neither A+, A- nor the products are materialised (the reference makes ~7 passes). This file
// checks the operands and splits the rows among threads; rows_impl.h has the arithmetic.
#include <vector>

#include "../kernels.h"
#include "rows.h"

namespace verifier_kernels {
namespace {

std::tuple<Tensor, Tensor> relaxed_backward_cpu(Tensor A, Tensor lower_slope, std::optional<Tensor> lower_intercept,
                                                Tensor upper_slope, std::optional<Tensor> upper_intercept) {
  const RowsCall call = prepare_relaxed(A, lower_slope, lower_intercept, upper_slope, upper_intercept);
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const RelaxedArgs<T> p = relaxed_args<T>(call, A, lower_slope, lower_intercept, upper_slope, upper_intercept);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, call.batch * call.rows, grain_rows(call.n),
                                [&](int64_t begin, int64_t end) { kernels.relaxed(p, begin, end); });
  });
  return {call.out, *call.bias};
}

std::tuple<Tensor, Tensor> relu_backward_cpu(Tensor A, Tensor lower, Tensor upper, std::optional<Tensor> lower_slope) {
  const RowsCall call = prepare_relu(A, lower, upper, lower_slope);
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ReluArgs<T> p = relu_args<T>(call, A, lower, upper, lower_slope);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, call.batch * call.rows, grain_rows(call.n), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(static_cast<size_t>(4 * call.n));
      kernels.relu(p, begin, end, scratch.data());
    });
  });
  return {call.out, *call.bias};
}

// Gradient of relu_backward with respect to A and alpha (the pre-activation bounds' part is left to the
// Python rule): one pass over grad_A_z and A per row, the relaxation formed once per box as in the forward op.
std::tuple<Tensor, Tensor> relu_backward_grad_cpu(Tensor grad_A_z, Tensor grad_bias, Tensor A, Tensor lower,
                                                  Tensor upper, std::optional<Tensor> lower_slope,
                                                  bool alpha_grad) {
  const ReluGradCall call = prepare_relu_grad(grad_A_z, grad_bias, A, lower, upper, lower_slope, alpha_grad);
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ReluGradArgs<T> p = relu_grad_args<T>(call, grad_A_z, grad_bias, A, lower, upper, lower_slope);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, call.batch * call.rows, grain_rows(call.n), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(static_cast<size_t>(4 * call.n));
      kernels.relu_grad(p, begin, end, scratch.data());
    });
  });
  return {call.grad_A, call.grad_alpha};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("relaxed_backward", TORCH_BOX(&verifier_kernels::relaxed_backward_cpu));
  m.impl("relu_backward", TORCH_BOX(&verifier_kernels::relu_backward_cpu));
  m.impl("relu_backward_grad", TORCH_BOX(&verifier_kernels::relu_backward_grad_cpu));
}
