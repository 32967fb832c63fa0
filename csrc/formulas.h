// Elementwise formulas shared by the CPU and CUDA kernels, written exactly as the pure-PyTorch
// references compute them (verifier/primitives.py), so both give the same rounding.
#pragma once

#include <cfloat>

#include "common.h"

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

// The formulas are templates over the value type V: a scalar T, or (in the CPU kernels) a vector of T lanes
// (the compilers' vector extension), with the same IEEE operations either way. `V{}` is zero in both.

// CROWN's ReLU relaxation on [l, u] (Zhang et al. 2018): the chord u (x - l) / (u - l) as the upper line of
// an unstable neuron, the adaptive lower slope (1 if u > -l else 0), exact lines on stable neurons.
// Mirrors primitives.relu_relaxation.
template <typename T, typename V = T>
VERIFIER_HOST_DEVICE void relu_relaxation(V l, V u, V& lower_slope, V& upper_slope, V& upper_intercept) {
  const V zero{};
  const V one = zero + T(1);
  const V tiny = zero + Tiny<T>::value;
  const V lo = l > zero ? zero : l;  // lower.clamp(max=0)
  const V up = u < zero ? zero : u;  // upper.clamp(min=0)
  const V width = up - lo;
  const V safe_width = width < tiny ? tiny : width;
  // divide before selecting: a division under a select may be compiled to per-lane branches
  const V chord = up / safe_width;
  const V flat = lo >= zero ? one : zero;
  upper_slope = width > zero ? chord : flat;
  upper_intercept = -upper_slope * lo;
  lower_slope = ((u > -l) & (u > zero)) ? one : zero;
}

// Where a neuron's relaxation is not exact: its pre-activation bounds straddle 0 (a truth value or a lane mask).
template <typename V>
VERIFIER_HOST_DEVICE auto relu_unstable(V l, V u) {
  const V zero{};
  return (l < zero) & (u > zero);
}

// Centre and radius of [l, u], the radius widened by rounding so [c - r, c + r] covers [l, u].
// Mirrors primitives.center_radius.
template <typename T, typename V = T>
VERIFIER_HOST_DEVICE void center_radius(V l, V u, V& center, V& radius) {
  center = (l + u) / T(2);
  const V above = u - center;
  const V below = center - l;
  radius = above < below ? below : above;
}

}  // namespace verifier_kernels
