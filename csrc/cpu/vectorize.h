// How the CPU kernels get SIMD code without -ffast-math or -march=native.
//
// Hot loops use the compilers' portable vector extension (`vector_size`): a Vec<T> holds 64 bytes of lanes
// (16 floats or 8 doubles), lowered to one AVX-512, two AVX2 or four SSE registers. Row sums keep one partial sum
// per lane, then add the lanes: a fixed, deterministic summation order that needs no reassociation flags.
// VERIFIER_CPU_CLONES compiles a function for AVX-512, AVX2 and baseline x86-64 and picks one at load time
// (function multi-versioning), so one build runs on any x86-64 CPU at its best width.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VERIFIER_NO_CLONES)
#define VERIFIER_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VERIFIER_CPU_CLONES
#endif

#if defined(__GNUC__)
#define VERIFIER_ALWAYS_INLINE inline __attribute__((always_inline))
#define VERIFIER_RESTRICT __restrict__
#else
#define VERIFIER_ALWAYS_INLINE inline
#define VERIFIER_RESTRICT
#endif

namespace verifier_kernels {

template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(64)));
};

// 64 bytes of T, operated on lane by lane (+, *, comparisons, ?: select).
template <typename T>
using Vec = typename VecOf<T>::type;

template <typename T>
constexpr int64_t kLanes = 64 / sizeof(T);

template <typename T>
VERIFIER_ALWAYS_INLINE Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
VERIFIER_ALWAYS_INLINE void store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
VERIFIER_ALWAYS_INLINE Vec<T> broadcast(T value) {
  return Vec<T>{} + value;
}

// The lanes of a partial sum, added in lane order.
template <typename T>
VERIFIER_ALWAYS_INLINE T sum_lanes(const Vec<T>& lanes) {
  T total = T(0);
  for (int64_t j = 0; j < kLanes<T>; ++j) total += lanes[j];
  return total;
}

// Rows per parallel task: about 32k elements of work, so small problems stay on one thread.
inline int64_t grain_rows(int64_t n) { return n > 0 ? (32768 + n - 1) / n : 32768; }

}  // namespace verifier_kernels
