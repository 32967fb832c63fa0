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
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "relaxed_backward: A must be a contiguous [b, K, N]");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower_slope, &upper_slope,
                                         lower_intercept ? &*lower_intercept : nullptr,
                                         upper_intercept ? &*upper_intercept : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows, n});
  Tensor bias = torch::stable::new_empty(A, {batch, rows});
  auto run = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    RelaxedArgs<T> p{};
    p.a = data<T>(A);
    p.a_layout = row_layout(A, A, batch, rows, n, "A");
    p.lower_slope = data<T>(lower_slope);
    p.lower_slope_layout = row_layout(lower_slope, A, batch, rows, n, "lower_slope");
    p.upper_slope = data<T>(upper_slope);
    p.upper_slope_layout = row_layout(upper_slope, A, batch, rows, n, "upper_slope");
    if (lower_intercept) {
      p.lower_intercept = data<T>(*lower_intercept);
      p.lower_intercept_layout = row_layout(*lower_intercept, A, batch, rows, n, "lower_intercept");
    }
    if (upper_intercept) {
      p.upper_intercept = data<T>(*upper_intercept);
      p.upper_intercept_layout = row_layout(*upper_intercept, A, batch, rows, n, "upper_intercept");
    }
    p.out = mutable_data<T>(out);
    p.bias = mutable_data<T>(bias);
    p.rows = rows;
    p.n = n;
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, batch * rows, grain_rows(n),
                                [&](int64_t begin, int64_t end) { kernels.relaxed(p, begin, end); });
  };
  if (is_float(A)) {
    run(float(0));
  } else {
    run(double(0));
  }
  return {out, bias};
}

std::tuple<Tensor, Tensor> relu_backward_cpu(Tensor A, Tensor lower, Tensor upper, std::optional<Tensor> lower_slope) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "relu_backward: A must be a contiguous [b, K, N]");
  STD_TORCH_CHECK(lower.dim() == 2 && upper.dim() == 2 && lower.size(0) == upper.size(0),
                  "relu_backward: pre-activation bounds must be two [batch, N] tensors of one shape");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, lower_slope ? &*lower_slope : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows, n});
  Tensor bias = torch::stable::new_empty(A, {batch, rows});
  auto run = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    ReluArgs<T> p{};
    p.a = data<T>(A);
    p.a_layout = row_layout(A, A, batch, rows, n, "A");
    p.bounds_layout = neuron_layout(lower, A, batch, n, "lower");
    neuron_layout(upper, A, batch, n, "upper");
    p.lower = data<T>(lower);
    p.upper = data<T>(upper);
    if (lower_slope) {
      p.alpha = data<T>(*lower_slope);
      p.alpha_layout = row_layout(*lower_slope, A, batch, rows, n, "lower_slope");
    }
    p.out = mutable_data<T>(out);
    p.bias = mutable_data<T>(bias);
    p.rows = rows;
    p.n = n;
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, batch * rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(static_cast<size_t>(4 * n));
      kernels.relu(p, begin, end, scratch.data());
    });
  };
  if (is_float(A)) {
    run(float(0));
  } else {
    run(double(0));
  }
  return {out, bias};
}

// Gradient of relu_backward with respect to A and alpha (the pre-activation bounds' part is left to the
// Python rule): one pass over grad_A_z and A per row, the relaxation formed once per box as in the forward op.
std::tuple<Tensor, Tensor> relu_backward_grad_cpu(Tensor grad_A_z, Tensor grad_bias, Tensor A, Tensor lower,
                                                  Tensor upper, std::optional<Tensor> lower_slope,
                                                  bool alpha_grad) {
  const ReluGradCall call = prepare_relu_grad(grad_A_z, grad_bias, A, lower, upper, lower_slope, alpha_grad);
  auto run = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ReluGradArgs<T> p = relu_grad_args<T>(call, grad_A_z, grad_bias, A, lower, upper, lower_slope);
    const RowKernels<T>& kernels = row_kernels<T>();
    torch::stable::parallel_for(0, call.batch * call.rows, grain_rows(call.n), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(static_cast<size_t>(4 * call.n));
      kernels.relu_grad(p, begin, end, scratch.data());
    });
  };
  if (is_float(A)) {
    run(float(0));
  } else {
    run(double(0));
  }
  return {call.grad_A, call.grad_alpha};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("relaxed_backward", TORCH_BOX(&verifier_kernels::relaxed_backward_cpu));
  m.impl("relu_backward", TORCH_BOX(&verifier_kernels::relu_backward_cpu));
  m.impl("relu_backward_grad", TORCH_BOX(&verifier_kernels::relu_backward_grad_cpu));
}
