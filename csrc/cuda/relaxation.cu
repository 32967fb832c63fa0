// CUDA kernels of the CROWN backward step through an elementwise relaxation and through a ReLU (relaxation
// formed on the fly from the pre-activation bounds). One warp per row of A: coalesced reads of the row, the
// slope selection in registers, the intercept sum reduced across the warp.
#include "../formulas.h"
#include "cuda_common.cuh"

namespace verifier_kernels {
namespace {

template <typename T>
__global__ void relaxed_backward_kernel(RelaxedArgs<T> p, int64_t total_rows) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= total_rows) return;
  const int64_t batch = r / p.rows;
  const int64_t row = r % p.rows;
  const T* a = p.a + p.a_layout.offset(batch, row);
  const T* ls = p.lower_slope + p.lower_slope_layout.offset(batch, row);
  const T* us = p.upper_slope + p.upper_slope_layout.offset(batch, row);
  const T* li = p.lower_intercept ? p.lower_intercept + p.lower_intercept_layout.offset(batch, row) : nullptr;
  const T* ui = p.upper_intercept ? p.upper_intercept + p.upper_intercept_layout.offset(batch, row) : nullptr;
  T* out = p.out + r * p.n;
  T partial = T(0);
  for (int64_t i = lane; i < p.n; i += kWarp) {
    const T x = a[i];
    const bool positive = x >= T(0);
    out[i] = positive ? x * ls[i] : x * us[i];
    if (positive ? li != nullptr : ui != nullptr) partial += x * (positive ? li[i] : ui[i]);
  }
  partial = warp_sum(partial);
  if (lane == 0) p.bias[r] = partial;
}

template <typename T>
__global__ void relu_backward_kernel(ReluArgs<T> p, int64_t total_rows) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= total_rows) return;
  const int64_t batch = r / p.rows;
  const int64_t row = r % p.rows;
  const T* a = p.a + p.a_layout.offset(batch, row);
  const T* l = p.lower + p.bounds_layout.offset(batch, 0);
  const T* u = p.upper + p.bounds_layout.offset(batch, 0);
  const T* alpha = p.alpha ? p.alpha + p.alpha_layout.offset(batch, row) : nullptr;
  T* out = p.out + r * p.n;
  T partial = T(0);
  for (int64_t i = lane; i < p.n; i += kWarp) {
    T lower_slope, upper_slope, upper_intercept;
    relu_relaxation<T>(l[i], u[i], lower_slope, upper_slope, upper_intercept);
    if (alpha != nullptr && relu_unstable(l[i], u[i])) lower_slope = alpha[i];
    const T x = a[i];
    const bool positive = x >= T(0);
    out[i] = positive ? x * lower_slope : x * upper_slope;
    if (!positive) partial += x * upper_intercept;
  }
  partial = warp_sum(partial);
  if (lane == 0) p.bias[r] = partial;
}

// The gradient of relu_backward w.r.t. A and alpha, one thread per element (grid-stride); the rule of the CPU
// kernel (rows_impl.h, relu_grad_row) and of the Python reference.
template <typename T>
__global__ void relu_backward_grad_kernel(ReluGradArgs<T> p, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t i = e % p.n;
    const int64_t r = e / p.n;
    const int64_t batch = r / p.rows;
    const int64_t row = r % p.rows;
    const T l = p.lower[p.bounds_layout.offset(batch, 0) + i];
    const T u = p.upper[p.bounds_layout.offset(batch, 0) + i];
    T lower_slope, upper_slope, upper_intercept;
    relu_relaxation<T>(l, u, lower_slope, upper_slope, upper_intercept);
    const bool unstable = relu_unstable(l, u);
    if (p.alpha != nullptr && unstable) lower_slope = p.alpha[p.alpha_layout.offset(batch, row) + i];
    const T x = p.a[p.a_layout.offset(batch, row) + i];
    const T g = p.grad_a_z[e];
    const bool positive = x >= T(0);
    p.grad_a[e] = positive ? g * lower_slope : g * upper_slope + p.grad_bias[r] * upper_intercept;
    if (p.grad_alpha != nullptr) p.grad_alpha[e] = (positive && unstable) ? g * x : T(0);
  }
}

std::tuple<Tensor, Tensor> relaxed_backward_cuda(Tensor A, Tensor lower_slope, std::optional<Tensor> lower_intercept,
                                                 Tensor upper_slope, std::optional<Tensor> upper_intercept) {
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const RowsCall call = prepare_relaxed(A, lower_slope, lower_intercept, upper_slope, upper_intercept);
  const int64_t total = call.batch * call.rows;
  if (total == 0) return {call.out, *call.bias};
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const RelaxedArgs<T> p = relaxed_args<T>(call, A, lower_slope, lower_intercept, upper_slope, upper_intercept);
    relaxed_backward_kernel<T><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    check_launch("relaxed_backward");
  });
  return {call.out, *call.bias};
}

std::tuple<Tensor, Tensor> relu_backward_cuda(Tensor A, Tensor lower, Tensor upper, std::optional<Tensor> lower_slope) {
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const RowsCall call = prepare_relu(A, lower, upper, lower_slope);
  const int64_t total = call.batch * call.rows;
  if (total == 0) return {call.out, *call.bias};
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ReluArgs<T> p = relu_args<T>(call, A, lower, upper, lower_slope);
    relu_backward_kernel<T><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    check_launch("relu_backward");
  });
  return {call.out, *call.bias};
}

std::tuple<Tensor, Tensor> relu_backward_grad_cuda(Tensor grad_A_z, Tensor grad_bias, Tensor A, Tensor lower,
                                                   Tensor upper, std::optional<Tensor> lower_slope,
                                                   bool alpha_grad) {
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const ReluGradCall call = prepare_relu_grad(grad_A_z, grad_bias, A, lower, upper, lower_slope, alpha_grad);
  const int64_t total = call.batch * call.rows * call.n;
  if (total == 0) return {call.grad_A, call.grad_alpha};
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ReluGradArgs<T> p = relu_grad_args<T>(call, grad_A_z, grad_bias, A, lower, upper, lower_slope);
    relu_backward_grad_kernel<T><<<blocks_for_elements(total), kBlock, 0, current_stream(A)>>>(p, total);
    check_launch("relu_backward_grad");
  });
  return {call.grad_A, call.grad_alpha};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CUDA, m) {
  m.impl("relaxed_backward", TORCH_BOX(&verifier_kernels::relaxed_backward_cuda));
  m.impl("relu_backward", TORCH_BOX(&verifier_kernels::relu_backward_cuda));
  m.impl("relu_backward_grad", TORCH_BOX(&verifier_kernels::relu_backward_grad_cuda));
}
