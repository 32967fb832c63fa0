// Elementwise formulas shared by the CPU and CUDA kernels, written exactly as the pure-PyTorch
// references compute them (verifier/primitives.py), so both give the same rounding.
#pragma once

#include <cfloat>

#if defined(__CUDACC__)
#define VERIFIER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VERIFIER_HOST_DEVICE inline
#endif

namespace verifier_kernels {

template <typename T>
struct Tiny;  // smallest positive normal number, torch.finfo(dtype).tiny
template <>
struct Tiny<float> {
  static constexpr float value = FLT_MIN;
};
template <>
struct Tiny<double> {
  static constexpr double value = DBL_MIN;
};

// CROWN's ReLU relaxation on [l, u] (Zhang et al. 2018): the chord u (x - l) / (u - l) as the upper line of
// an unstable neuron, the adaptive lower slope (1 if u > -l else 0), exact lines on stable neurons.
// Mirrors primitives.relu_relaxation.
template <typename T>
VERIFIER_HOST_DEVICE void relu_relaxation(T l, T u, T& lower_slope, T& upper_slope, T& upper_intercept) {
  const T lo = l > T(0) ? T(0) : l;  // lower.clamp(max=0)
  const T up = u < T(0) ? T(0) : u;  // upper.clamp(min=0)
  const T width = up - lo;
  const T safe_width = width < Tiny<T>::value ? Tiny<T>::value : width;
  upper_slope = width > T(0) ? up / safe_width : (lo >= T(0) ? T(1) : T(0));
  upper_intercept = -upper_slope * lo;
  lower_slope = (u > -l && u > T(0)) ? T(1) : T(0);
}

// A neuron whose relaxation is not exact: its pre-activation bounds straddle 0.
template <typename T>
VERIFIER_HOST_DEVICE bool relu_unstable(T l, T u) {
  return l < T(0) && u > T(0);
}

// Centre and radius of [l, u], the radius widened by rounding so [c - r, c + r] covers [l, u].
// Mirrors primitives.center_radius.
template <typename T>
VERIFIER_HOST_DEVICE void center_radius(T l, T u, T& center, T& radius) {
  center = (l + u) / T(2);
  const T above = u - center;
  const T below = center - l;
  radius = above < below ? below : above;
}

}  // namespace verifier_kernels
