// CUDA kernels of the CROWN backward step through an elementwise relaxation and through a ReLU (relaxation
// formed on the fly from the pre-activation bounds). One warp per row of A: coalesced reads of the row (16-byte
// packs where the row length allows), the slope selection in registers, the intercept sum reduced across the warp.
#include "../formulas.h"
#include "cuda_common.cuh"

namespace verifier_kernels {
namespace {

template <typename T, int W>
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
  for (int64_t j = lane; j < p.n / W; j += kWarp) {
    const Pack<T, W> x = load_pack<W>(a, j);
    const Pack<T, W> lower_slope = load_pack<W>(ls, j);
    const Pack<T, W> upper_slope = load_pack<W>(us, j);
    Pack<T, W> lower_intercept{}, upper_intercept{};
    if (li != nullptr) lower_intercept = load_pack<W>(li, j);
    if (ui != nullptr) upper_intercept = load_pack<W>(ui, j);
    Pack<T, W> result;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const T value = x.v[k];
      const bool positive = value >= T(0);
      result.v[k] = positive ? value * lower_slope.v[k] : value * upper_slope.v[k];
      if (positive ? li != nullptr : ui != nullptr) {
        partial += value * (positive ? lower_intercept.v[k] : upper_intercept.v[k]);
      }
    }
    store_pack<W>(out, j, result);
  }
  partial = warp_sum(partial);
  if (lane == 0) p.bias[r] = partial;
}

template <typename T, int W>
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
  for (int64_t j = lane; j < p.n / W; j += kWarp) {
    const Pack<T, W> x = load_pack<W>(a, j);
    const Pack<T, W> lower = load_pack<W>(l, j);
    const Pack<T, W> upper = load_pack<W>(u, j);
    Pack<T, W> slopes{};
    if (alpha != nullptr) slopes = load_pack<W>(alpha, j);
    Pack<T, W> result;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      T lower_slope, upper_slope, upper_intercept;
      relu_relaxation<T>(lower.v[k], upper.v[k], lower_slope, upper_slope, upper_intercept);
      if (alpha != nullptr && relu_unstable(lower.v[k], upper.v[k])) lower_slope = slopes.v[k];
      const T value = x.v[k];
      const bool positive = value >= T(0);
      result.v[k] = positive ? value * lower_slope : value * upper_slope;
      if (!positive) partial += value * upper_intercept;
    }
    store_pack<W>(out, j, result);
  }
  partial = warp_sum(partial);
  if (lane == 0) p.bias[r] = partial;
}

// The gradient of relu_backward w.r.t. A and alpha, one thread per pack of W elements of a row (grid-stride); the
// rule of the CPU kernel (rows_impl.h, relu_grad_row) and of the Python reference.
template <typename T, int W>
__global__ void relu_backward_grad_kernel(ReluGradArgs<T> p, int64_t total_packs) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t packs_per_row = p.n / W;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total_packs; e += stride) {
    const int64_t j = e % packs_per_row;
    const int64_t r = e / packs_per_row;
    const int64_t batch = r / p.rows;
    const int64_t row = r % p.rows;
    const Pack<T, W> lower = load_pack<W>(p.lower + p.bounds_layout.offset(batch, 0), j);
    const Pack<T, W> upper = load_pack<W>(p.upper + p.bounds_layout.offset(batch, 0), j);
    const Pack<T, W> x = load_pack<W>(p.a + p.a_layout.offset(batch, row), j);
    const Pack<T, W> g = load_pack<W>(p.grad_a_z, e);
    Pack<T, W> slopes{};
    if (p.alpha != nullptr) slopes = load_pack<W>(p.alpha + p.alpha_layout.offset(batch, row), j);
    const T grad_bias = p.grad_bias[r];
    Pack<T, W> grad_a, grad_alpha;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      T lower_slope, upper_slope, upper_intercept;
      relu_relaxation<T>(lower.v[k], upper.v[k], lower_slope, upper_slope, upper_intercept);
      const bool unstable = relu_unstable(lower.v[k], upper.v[k]);
      if (p.alpha != nullptr && unstable) lower_slope = slopes.v[k];
      const bool positive = x.v[k] >= T(0);
      grad_a.v[k] = positive ? g.v[k] * lower_slope : g.v[k] * upper_slope + grad_bias * upper_intercept;
      grad_alpha.v[k] = (positive && unstable) ? g.v[k] * x.v[k] : T(0);
    }
    store_pack<W>(p.grad_a, e, grad_a);
    if (p.grad_alpha != nullptr) store_pack<W>(p.grad_alpha, e, grad_alpha);
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
    if (packable<T>(call.n, {p.a, p.lower_slope, p.lower_intercept, p.upper_slope, p.upper_intercept, p.out})) {
      relaxed_backward_kernel<T, kPackWidth<T>><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    } else {
      relaxed_backward_kernel<T, 1><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    }
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
    if (packable<T>(call.n, {p.a, p.lower, p.upper, p.alpha, p.out})) {
      relu_backward_kernel<T, kPackWidth<T>><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    } else {
      relu_backward_kernel<T, 1><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    }
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
    if (packable<T>(call.n, {p.grad_a_z, p.a, p.lower, p.upper, p.alpha, p.grad_a, p.grad_alpha})) {
      constexpr int W = kPackWidth<T>;
      relu_backward_grad_kernel<T, W><<<blocks_for_elements(total / W), kBlock, 0, current_stream(A)>>>(p, total / W);
    } else {
      relu_backward_grad_kernel<T, 1><<<blocks_for_elements(total), kBlock, 0, current_stream(A)>>>(p, total);
    }
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
