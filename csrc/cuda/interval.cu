// CUDA kernels of the IBP step through a dense layer: centre and radius of the input boxes in one pass, the two
// products by cuBLAS (through the dispatcher; TF32 stays off unless the caller enabled it, and the Python wrapper
// turns it off around this op), and the output boxes c' -+ r' formed in place in one pass.
#include "../formulas.h"
#include "cuda_common.cuh"

namespace verifier_kernels {
namespace {

template <typename T>
__global__ void center_radius_kernel(const T* lower, const T* upper, T* center, T* radius, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    center_radius<T>(lower[i], upper[i], center[i], radius[i]);
  }
}

template <typename T>
__global__ void interval_kernel(T* out_center, T* out_radius, const T* bias, int64_t outputs, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T center = bias != nullptr ? out_center[i] + bias[i % outputs] : out_center[i];
    const T radius = out_radius[i];
    out_center[i] = center - radius;
    out_radius[i] = center + radius;
  }
}

std::tuple<Tensor, Tensor> interval_linear_cuda(Tensor lower, Tensor upper, Tensor weight, Tensor weight_abs,
                                                std::optional<Tensor> bias) {
  check_interval_linear(lower, upper, weight, weight_abs, bias);
  torch::stable::accelerator::DeviceGuard guard(lower.get_device_index());
  const int64_t outputs = weight.size(0);
  Tensor center = torch::stable::new_empty(lower, {lower.size(0), lower.size(1)});
  Tensor radius = torch::stable::new_empty(lower, {lower.size(0), lower.size(1)});
  const int64_t count = lower.numel();
  cudaStream_t stream = current_stream(lower);
  dispatch_floating(lower, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    if (count == 0) return;
    center_radius_kernel<T><<<blocks_for_elements(count), kBlock, 0, stream>>>(
        data<T>(lower), data<T>(upper), mutable_data<T>(center), mutable_data<T>(radius), count);
    check_launch("interval_linear");
  });
  Tensor out_center = torch::stable::contiguous(torch::stable::matmul(center, torch::stable::transpose(weight, 0, 1)));
  Tensor out_radius =
      torch::stable::contiguous(torch::stable::matmul(radius, torch::stable::transpose(weight_abs, 0, 1)));
  const int64_t out_count = out_center.numel();
  dispatch_floating(lower, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    if (out_count == 0) return;
    interval_kernel<T><<<blocks_for_elements(out_count), kBlock, 0, stream>>>(
        mutable_data<T>(out_center), mutable_data<T>(out_radius), data_or_null<T>(bias), outputs, out_count);
    check_launch("interval_linear");
  });
  return {out_center, out_radius};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CUDA, m) {
  m.impl("interval_linear", TORCH_BOX(&verifier_kernels::interval_linear_cuda));
}
