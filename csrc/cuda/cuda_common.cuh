// Helpers of the CUDA kernels: the current stream (through the stable C shim), error checks, warp sums.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>

#include "../kernels.h"

namespace verifier_kernels {

// The stream PyTorch is using on the tensor's device: kernels are queued behind its pending work.
inline cudaStream_t current_stream(const Tensor& t) {
  void* stream = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &stream));
  return static_cast<cudaStream_t>(stream);
}

inline void check_launch(const char* what) {
  const cudaError_t error = cudaGetLastError();
  STD_TORCH_CHECK(error == cudaSuccess, what, ": CUDA kernel launch failed: ", cudaGetErrorString(error));
}

constexpr int kWarp = 32;
constexpr int kBlock = 256;  // 8 warps; one warp per row of A
constexpr int kRowsPerBlock = kBlock / kWarp;

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

// Packs of W values of T moved by one 16-byte (or, W = 1, one scalar) load or store: on Hopper a warp's 16-byte
// accesses keep four times as many bytes in flight per instruction as 4-byte ones. Every row of the operands
// starts at a multiple of n values, so with n a multiple of W and 16-byte aligned base pointers every pack is
// aligned; otherwise the kernels run with W = 1. The arithmetic per value is the scalar formula either way.
template <typename T, int W>
struct alignas(sizeof(T) * W) Pack {
  T v[W];
};

template <typename T>
constexpr int kPackWidth = 16 / static_cast<int>(sizeof(T));  // 4 floats, 2 doubles

template <int W, typename T>
__device__ __forceinline__ Pack<T, W> load_pack(const T* base, int64_t j) {
  return reinterpret_cast<const Pack<T, W>*>(base)[j];
}

template <int W, typename T>
__device__ __forceinline__ void store_pack(T* base, int64_t j, const Pack<T, W>& value) {
  reinterpret_cast<Pack<T, W>*>(base)[j] = value;
}

// Whether rows of n values at these base pointers (nulls ignored) can be read in 16-byte packs.
template <typename T>
inline bool packable(int64_t n, std::initializer_list<const void*> pointers) {
  if (n % kPackWidth<T> != 0) return false;
  for (const void* p : pointers) {
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

inline unsigned int blocks_for_rows(int64_t rows) {
  return static_cast<unsigned int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

inline unsigned int blocks_for_elements(int64_t count) {
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  return static_cast<unsigned int>(blocks < 65535 * 32 ? blocks : 65535 * 32);
}

}  // namespace verifier_kernels
