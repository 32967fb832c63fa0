// CUDA kernels of the CROWN backward step through an elementwise relaxation and through a ReLU (relaxation
// formed on the fly from the pre-activation bounds). One warp per row of A: coalesced reads of the row, the
// slope selection in registers, the intercept sum reduced across the warp.
#include "../formulas.h"
#include "cuda_common.cuh"

namespace verifier_kernels {
namespace {

template <typename T>
struct RelaxedParams {
  const T* a;
  RowLayout a_layout;
  const T* lower_slope;
  RowLayout lower_slope_layout;
  const T* lower_intercept;  // may be null
  RowLayout lower_intercept_layout;
  const T* upper_slope;
  RowLayout upper_slope_layout;
  const T* upper_intercept;  // may be null
  RowLayout upper_intercept_layout;
  T* out;
  T* bias;
  int64_t total_rows;
  int64_t rows;
  int64_t n;
};

template <typename T>
__global__ void relaxed_backward_kernel(RelaxedParams<T> p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= p.total_rows) return;
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
struct ReluParams {
  const T* a;
  RowLayout a_layout;
  const T* lower;
  const T* upper;
  RowLayout bounds_layout;
  const T* alpha;  // may be null
  RowLayout alpha_layout;
  T* out;
  T* bias;
  int64_t total_rows;
  int64_t rows;
  int64_t n;
};

template <typename T>
__global__ void relu_backward_kernel(ReluParams<T> p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= p.total_rows) return;
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
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "relaxed_backward: A must be a contiguous [b, K, N]");
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower_slope, &upper_slope,
                                         lower_intercept ? &*lower_intercept : nullptr,
                                         upper_intercept ? &*upper_intercept : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows, n});
  Tensor bias = torch::stable::new_empty(A, {batch, rows});
  const int64_t total = batch * rows;
  if (total == 0) return {out, bias};
  auto launch = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    RelaxedParams<T> p{};
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
    p.total_rows = total;
    p.rows = rows;
    p.n = n;
    relaxed_backward_kernel<T><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p);
    check_launch("relaxed_backward");
  };
  if (is_float(A)) {
    launch(float(0));
  } else {
    launch(double(0));
  }
  return {out, bias};
}

std::tuple<Tensor, Tensor> relu_backward_cuda(Tensor A, Tensor lower, Tensor upper, std::optional<Tensor> lower_slope) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "relu_backward: A must be a contiguous [b, K, N]");
  STD_TORCH_CHECK(lower.dim() == 2 && upper.dim() == 2 && lower.size(0) == upper.size(0),
                  "relu_backward: pre-activation bounds must be two [batch, N] tensors of one shape");
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, lower_slope ? &*lower_slope : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows, n});
  Tensor bias = torch::stable::new_empty(A, {batch, rows});
  const int64_t total = batch * rows;
  if (total == 0) return {out, bias};
  auto launch = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    ReluParams<T> p{};
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
    p.total_rows = total;
    p.rows = rows;
    p.n = n;
    relu_backward_kernel<T><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p);
    check_launch("relu_backward");
  };
  if (is_float(A)) {
    launch(float(0));
  } else {
    launch(double(0));
  }
  return {out, bias};
}

std::tuple<Tensor, Tensor> relu_backward_grad_cuda(Tensor grad_A_z, Tensor grad_bias, Tensor A, Tensor lower,
                                                   Tensor upper, std::optional<Tensor> lower_slope,
                                                   bool alpha_grad) {
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const ReluGradCall call = prepare_relu_grad(grad_A_z, grad_bias, A, lower, upper, lower_slope, alpha_grad);
  const int64_t total = call.batch * call.rows * call.n;
  if (total == 0) return {call.grad_A, call.grad_alpha};
  auto launch = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ReluGradArgs<T> p = relu_grad_args<T>(call, grad_A_z, grad_bias, A, lower, upper, lower_slope);
    relu_backward_grad_kernel<T><<<blocks_for_elements(total), kBlock, 0, current_stream(A)>>>(p, total);
    check_launch("relu_backward_grad");
  };
  if (is_float(A)) {
    launch(float(0));
  } else {
    launch(double(0));
  }
  return {call.grad_A, call.grad_alpha};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CUDA, m) {
  m.impl("relaxed_backward", TORCH_BOX(&verifier_kernels::relaxed_backward_cuda));
  m.impl("relu_backward", TORCH_BOX(&verifier_kernels::relu_backward_cuda));
  m.impl("relu_backward_grad", TORCH_BOX(&verifier_kernels::relu_backward_grad_cuda));
}
