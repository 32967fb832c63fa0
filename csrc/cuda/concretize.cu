// CUDA kernel of box concretisation, min over the box of A . x + bias = A . c - |A| . r + bias: one warp per
// row of A (16-byte packs where the row length allows), the box centre and radius formed on the fly, no |A|
// materialised.
#include "../formulas.h"
#include "cuda_common.cuh"

namespace verifier_kernels {
namespace {

template <typename T, int W>
__global__ void concretize_box_kernel(ConcretizeArgs<T> p, int64_t total_rows) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= total_rows) return;
  const int64_t batch = r / p.rows;
  const int64_t row = r % p.rows;
  const T* a = p.a + p.a_layout.offset(batch, row);
  const T* l = p.lower + p.box_layout.offset(batch, 0);
  const T* u = p.upper + p.box_layout.offset(batch, 0);
  T partial = T(0);
  for (int64_t j = lane; j < p.n / W; j += kWarp) {
    const Pack<T, W> x = load_pack<W>(a, j);
    const Pack<T, W> lower = load_pack<W>(l, j);
    const Pack<T, W> upper = load_pack<W>(u, j);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      T center, radius;
      center_radius<T>(lower.v[k], upper.v[k], center, radius);
      const T value = x.v[k];
      const T magnitude = value < T(0) ? -value : value;
      partial += value * center - magnitude * radius;
    }
  }
  partial = warp_sum(partial);
  if (lane == 0) p.out[r] = p.bias != nullptr ? partial + p.bias[batch * p.bias_batch_stride + row] : partial;
}

Tensor concretize_box_cuda(Tensor A, std::optional<Tensor> bias, Tensor lower, Tensor upper) {
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const RowsCall call = prepare_concretize(A, bias, lower, upper);
  const int64_t total = call.batch * call.rows;
  if (total == 0) return call.out;
  dispatch_floating(A, [&](auto typed_zero) {
    using T = decltype(typed_zero);
    const ConcretizeArgs<T> p = concretize_args<T>(call, A, bias, lower, upper);
    if (packable<T>(call.n, {p.a, p.lower, p.upper})) {
      concretize_box_kernel<T, kPackWidth<T>><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    } else {
      concretize_box_kernel<T, 1><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p, total);
    }
    check_launch("concretize_box");
  });
  return call.out;
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CUDA, m) {
  m.impl("concretize_box", TORCH_BOX(&verifier_kernels::concretize_box_cuda));
}
