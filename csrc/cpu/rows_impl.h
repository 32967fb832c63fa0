// The CPU row kernels, written once and compiled once per instruction set (isa_*.cpp define VERIFIER_ISA and
// VERIFIER_VECTOR_BYTES, the register width, and set the target before including this file).
//
// Lanes are the compilers' portable vector extension (`vector_size`) at the native register width: 16 bytes
// (baseline SSE2), 32 (AVX2) or 64 (AVX-512); wider vectors than the target's registers get their selects
// split lane by lane, hence one build per width. Row sums keep one partial sum per lane and add the lanes
// pairwise: a fixed order, no reassociation flags. Every elementwise result is the reference's IEEE
// operation (no -ffast-math, no FMA contraction), so the new coefficients equal PyTorch's bit for bit.
//
// Everything here has internal linkage except make_row_kernels in the ISA's own namespace.
#include <cstring>
#include <type_traits>

#include "../formulas.h"
#include "rows.h"

#if !defined(VERIFIER_ISA) || !defined(VERIFIER_VECTOR_BYTES)
#error "define VERIFIER_ISA and VERIFIER_VECTOR_BYTES before including rows_impl.h"
#endif

#if defined(__GNUC__)
#define VERIFIER_ALWAYS_INLINE static inline __attribute__((always_inline))
#define VERIFIER_RESTRICT __restrict__
#else
#define VERIFIER_ALWAYS_INLINE static inline
#define VERIFIER_RESTRICT
#endif

namespace verifier_kernels {
namespace VERIFIER_ISA {
namespace {

template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(VERIFIER_VECTOR_BYTES)));
};

// One register of T, operated on lane by lane (+, *, comparisons, ?: select).
template <typename T>
using Vec = typename VecOf<T>::type;

template <typename T>
constexpr int64_t kLanes = VERIFIER_VECTOR_BYTES / sizeof(T);

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

// Lane indices 0, 1, ..., as integers of T's width (so that comparing them gives a mask for T's lanes).
template <typename T>
VERIFIER_ALWAYS_INLINE auto lane_indices() {
  using Lane = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef Lane LaneVec __attribute__((vector_size(VERIFIER_VECTOR_BYTES)));
  LaneVec index;
  for (int64_t j = 0; j < kLanes<T>; ++j) index[j] = static_cast<Lane>(j);
  return index;
}

// (box, spec row) of the flattened rows begin, begin + 1, ...: one division at the start, then increments.
struct RowCursor {
  int64_t batch;
  int64_t row;
  int64_t rows;
  VERIFIER_HOST_DEVICE_MEMBER RowCursor(int64_t begin, int64_t rows_per_box)
      : batch(begin / rows_per_box), row(begin % rows_per_box), rows(rows_per_box) {}
  VERIFIER_HOST_DEVICE_MEMBER void next() {
    if (++row == rows) {
      row = 0;
      ++batch;
    }
  }
};

// Calls visit(i) for registers covering [0, n): i = 0, lanes, 2 lanes, ..., and, when n is not a multiple, a
// last register ending at n that overlaps the one before (for elementwise results, which it rewrites with
// the same values). Returns where a scalar loop must take over: n, or 0 when n is shorter than a register.
template <typename T, typename Visit>
VERIFIER_ALWAYS_INLINE int64_t for_each_register(int64_t n, Visit&& visit) {
  if (n < kLanes<T>) return 0;
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) visit(i);
  if (i < n) visit(n - kLanes<T>);
  return n;
}

// The lanes of a partial sum, added pairwise (halves, then quarters, ...).
template <typename T>
VERIFIER_ALWAYS_INLINE T sum_lanes(const Vec<T>& lanes) {
  T part[kLanes<T>];
  std::memcpy(part, &lanes, sizeof(part));
  for (int64_t width = kLanes<T> / 2; width > 0; width /= 2) {
    for (int64_t j = 0; j < width; ++j) part[j] += part[j + width];
  }
  return part[0];
}

// One row of the CROWN step (Zhang et al. 2018, Thm 3.2: a non-negative coefficient takes the lower line):
// out = A+ * lower_slope + A- * upper_slope; returns sum(A+ * lower_intercept + A- * upper_intercept).
template <typename T, bool kLowerIntercept, bool kUpperIntercept>
VERIFIER_ALWAYS_INLINE T relaxed_row(const T* VERIFIER_RESTRICT a, const T* VERIFIER_RESTRICT lower_slope,
                                     const T* VERIFIER_RESTRICT upper_slope,
                                     const T* VERIFIER_RESTRICT lower_intercept,
                                     const T* VERIFIER_RESTRICT upper_intercept, T* VERIFIER_RESTRICT out,
                                     int64_t n) {
  constexpr int64_t lanes_count = kLanes<T>;
  const Vec<T> zero{};
  Vec<T> lanes{};
  int64_t i = 0;
  for (; i + lanes_count <= n; i += lanes_count) {
    const Vec<T> x = load(a + i);
    const auto positive = x >= zero;
    store(out + i, positive ? x * load(lower_slope + i) : x * load(upper_slope + i));
    if constexpr (kLowerIntercept || kUpperIntercept) {
      const Vec<T> on_lower = kLowerIntercept ? x * load(lower_intercept + i) : zero;
      const Vec<T> on_upper = kUpperIntercept ? x * load(upper_intercept + i) : zero;
      lanes += positive ? on_lower : on_upper;
    }
  }
  if (i < n && n >= lanes_count) {
    // the last register ends at n and overlaps the previous one: overlapped lanes are rewritten with the
    // same values and left out of the sum
    const int64_t start = n - lanes_count;
    const Vec<T> x = load(a + start);
    const auto positive = x >= zero;
    store(out + start, positive ? x * load(lower_slope + start) : x * load(upper_slope + start));
    if constexpr (kLowerIntercept || kUpperIntercept) {
      const Vec<T> on_lower = kLowerIntercept ? x * load(lower_intercept + start) : zero;
      const Vec<T> on_upper = kUpperIntercept ? x * load(upper_intercept + start) : zero;
      const auto fresh = lane_indices<T>() >= static_cast<decltype(lane_indices<T>()[0])>(i - start);
      lanes += fresh ? (positive ? on_lower : on_upper) : zero;
    }
    i = n;
  }
  T tail = T(0);
  for (; i < n; ++i) {
    const T x = a[i];
    const bool positive = x >= T(0);
    out[i] = positive ? x * lower_slope[i] : x * upper_slope[i];
    if constexpr (kLowerIntercept || kUpperIntercept) {
      const T on_lower = kLowerIntercept ? x * lower_intercept[i] : T(0);
      const T on_upper = kUpperIntercept ? x * upper_intercept[i] : T(0);
      tail += positive ? on_lower : on_upper;
    }
  }
  return n >= lanes_count ? sum_lanes<T>(lanes) + tail : tail;
}

template <typename T, bool kLowerIntercept, bool kUpperIntercept>
void relaxed_rows_with(const RelaxedArgs<T>& p, int64_t begin, int64_t end) {
  RowCursor at(begin, p.rows);
  for (int64_t r = begin; r < end; ++r, at.next()) {
    const int64_t batch = at.batch;
    const int64_t row = at.row;
    p.bias[r] = relaxed_row<T, kLowerIntercept, kUpperIntercept>(
        p.a + p.a_layout.offset(batch, row), p.lower_slope + p.lower_slope_layout.offset(batch, row),
        p.upper_slope + p.upper_slope_layout.offset(batch, row),
        kLowerIntercept ? p.lower_intercept + p.lower_intercept_layout.offset(batch, row) : nullptr,
        kUpperIntercept ? p.upper_intercept + p.upper_intercept_layout.offset(batch, row) : nullptr,
        p.out + r * p.n, p.n);
  }
}

template <typename T>
void relaxed_rows(const RelaxedArgs<T>& p, int64_t begin, int64_t end) {
  const bool has_lower = p.lower_intercept != nullptr;
  const bool has_upper = p.upper_intercept != nullptr;
  if (has_lower && has_upper) {
    relaxed_rows_with<T, true, true>(p, begin, end);
  } else if (has_upper) {
    relaxed_rows_with<T, false, true>(p, begin, end);
  } else if (has_lower) {
    relaxed_rows_with<T, true, false>(p, begin, end);
  } else {
    relaxed_rows_with<T, false, false>(p, begin, end);
  }
}

// The ReLU relaxation of one box's n neurons (relu_relaxation, lane by lane).
template <typename T>
VERIFIER_ALWAYS_INLINE void relu_relaxation_row(const T* VERIFIER_RESTRICT l, const T* VERIFIER_RESTRICT u,
                                                T* VERIFIER_RESTRICT lower_slope, T* VERIFIER_RESTRICT upper_slope,
                                                T* VERIFIER_RESTRICT upper_intercept, int64_t n) {
  int64_t i = for_each_register<T>(n, [&](int64_t at) {
    Vec<T> ls, us, ui;
    relu_relaxation<T, Vec<T>>(load(l + at), load(u + at), ls, us, ui);
    store(lower_slope + at, ls);
    store(upper_slope + at, us);
    store(upper_intercept + at, ui);
  });
  for (; i < n; ++i) relu_relaxation<T>(l[i], u[i], lower_slope[i], upper_slope[i], upper_intercept[i]);
}

// The lower slopes of one row: alpha on unstable neurons, the relaxation's own slope on stable ones.
template <typename T>
VERIFIER_ALWAYS_INLINE void alpha_slope_row(const T* VERIFIER_RESTRICT l, const T* VERIFIER_RESTRICT u,
                                            const T* VERIFIER_RESTRICT alpha, const T* VERIFIER_RESTRICT stable,
                                            T* VERIFIER_RESTRICT out, int64_t n) {
  int64_t i = for_each_register<T>(n, [&](int64_t at) {
    store(out + at, relu_unstable(load(l + at), load(u + at)) ? load(alpha + at) : load(stable + at));
  });
  for (; i < n; ++i) out[i] = relu_unstable(l[i], u[i]) ? alpha[i] : stable[i];
}

// The ReLU relaxation of the current box in `scratch` (4n values), formed once per box and reused by its K rows,
// and the lower slopes of the current row: alpha on unstable neurons when given, else the relaxation's own.
template <typename T>
struct BoxRelaxation {
  T* lower_slope;
  T* upper_slope;
  T* upper_intercept;
  T* row_slope;
  int64_t n;
  int64_t formed_for = -1;

  BoxRelaxation(T* scratch, int64_t size)
      : lower_slope(scratch),
        upper_slope(scratch + size),
        upper_intercept(scratch + 2 * size),
        row_slope(scratch + 3 * size),
        n(size) {}

  const T* l = nullptr;  // the current row's pre-activation bounds
  const T* u = nullptr;

  // Moves to row (batch, row) of a ReLU step's operands `p` (ReluArgs or ReluGradArgs): points l and u at its
  // box's bounds, forms that box's relaxation unless it is already there, and returns the row's lower slopes.
  template <bool kAlpha, typename Args>
  const T* at_row(const Args& p, int64_t batch, int64_t row) {
    l = p.lower + p.bounds_layout.offset(batch, 0);
    u = p.upper + p.bounds_layout.offset(batch, 0);
    const int64_t box = p.bounds_layout.batch_stride == 0 ? 0 : batch;
    if (box != formed_for) {
      relu_relaxation_row(l, u, lower_slope, upper_slope, upper_intercept, n);
      formed_for = box;
    }
    if constexpr (kAlpha) {
      alpha_slope_row(l, u, p.alpha + p.alpha_layout.offset(batch, row), lower_slope, row_slope, n);
      return row_slope;
    }
    return lower_slope;
  }
};

template <typename T, bool kAlpha>
void relu_rows_with(const ReluArgs<T>& p, int64_t begin, int64_t end, T* scratch) {
  BoxRelaxation<T> relaxation(scratch, p.n);
  RowCursor at(begin, p.rows);
  for (int64_t r = begin; r < end; ++r, at.next()) {
    const T* slope = relaxation.template at_row<kAlpha>(p, at.batch, at.row);
    p.bias[r] = relaxed_row<T, false, true>(p.a + p.a_layout.offset(at.batch, at.row), slope, relaxation.upper_slope,
                                            nullptr, relaxation.upper_intercept, p.out + r * p.n, p.n);
  }
}

template <typename T>
void relu_rows(const ReluArgs<T>& p, int64_t begin, int64_t end, T* scratch) {
  if (p.alpha != nullptr) {
    relu_rows_with<T, true>(p, begin, end, scratch);
  } else {
    relu_rows_with<T, false>(p, begin, end, scratch);
  }
}

// One row of the gradient of the ReLU step: grad_A = grad_A_z * lower_slope where A >= 0, else
// grad_A_z * upper_slope + grad_bias * upper_intercept; grad_alpha = grad_A_z * A where A >= 0 on an unstable
// neuron, else 0. Mirrors the reference rule in verifier/kernels/relaxation.py, operation for operation.
template <typename T, bool kAlphaGrad>
VERIFIER_ALWAYS_INLINE void relu_grad_row(const T* VERIFIER_RESTRICT grad_a_z, T grad_bias,
                                          const T* VERIFIER_RESTRICT a, const T* VERIFIER_RESTRICT l,
                                          const T* VERIFIER_RESTRICT u, const T* VERIFIER_RESTRICT lower_slope,
                                          const T* VERIFIER_RESTRICT upper_slope,
                                          const T* VERIFIER_RESTRICT upper_intercept, T* VERIFIER_RESTRICT grad_a,
                                          T* VERIFIER_RESTRICT grad_alpha, int64_t n) {
  const Vec<T> zero{};
  const Vec<T> g_bias = zero + grad_bias;
  int64_t i = for_each_register<T>(n, [&](int64_t at) {
    const Vec<T> x = load(a + at);
    const Vec<T> g = load(grad_a_z + at);
    const auto positive = x >= zero;
    const Vec<T> on_lower = g * load(lower_slope + at);
    const Vec<T> on_upper = g * load(upper_slope + at) + g_bias * load(upper_intercept + at);
    store(grad_a + at, positive ? on_lower : on_upper);
    if constexpr (kAlphaGrad) {
      store(grad_alpha + at, (positive & relu_unstable(load(l + at), load(u + at))) ? g * x : zero);
    }
  });
  for (; i < n; ++i) {
    const T x = a[i];
    const T g = grad_a_z[i];
    const bool positive = x >= T(0);
    grad_a[i] = positive ? g * lower_slope[i] : g * upper_slope[i] + grad_bias * upper_intercept[i];
    if constexpr (kAlphaGrad) grad_alpha[i] = (positive && relu_unstable(l[i], u[i])) ? g * x : T(0);
  }
}

template <typename T, bool kAlpha, bool kAlphaGrad>
void relu_grad_rows_with(const ReluGradArgs<T>& p, int64_t begin, int64_t end, T* scratch) {
  const int64_t n = p.n;
  BoxRelaxation<T> relaxation(scratch, n);
  RowCursor at(begin, p.rows);
  for (int64_t r = begin; r < end; ++r, at.next()) {
    const T* slope = relaxation.template at_row<kAlpha>(p, at.batch, at.row);
    relu_grad_row<T, kAlphaGrad>(p.grad_a_z + r * n, p.grad_bias[r], p.a + p.a_layout.offset(at.batch, at.row),
                                 relaxation.l, relaxation.u, slope, relaxation.upper_slope,
                                 relaxation.upper_intercept, p.grad_a + r * n,
                                 kAlphaGrad ? p.grad_alpha + r * n : nullptr, n);
  }
}

template <typename T>
void relu_grad_rows(const ReluGradArgs<T>& p, int64_t begin, int64_t end, T* scratch) {
  if (p.alpha == nullptr) {
    relu_grad_rows_with<T, false, false>(p, begin, end, scratch);
  } else if (p.grad_alpha == nullptr) {
    relu_grad_rows_with<T, true, false>(p, begin, end, scratch);
  } else {
    relu_grad_rows_with<T, true, true>(p, begin, end, scratch);
  }
}

// Centre and radius of n box coordinates (center_radius, lane by lane).
template <typename T>
VERIFIER_ALWAYS_INLINE void center_radius_row(const T* VERIFIER_RESTRICT l, const T* VERIFIER_RESTRICT u,
                                              T* VERIFIER_RESTRICT center, T* VERIFIER_RESTRICT radius, int64_t n) {
  int64_t i = for_each_register<T>(n, [&](int64_t at) {
    Vec<T> c, r;
    center_radius<T, Vec<T>>(load(l + at), load(u + at), c, r);
    store(center + at, c);
    store(radius + at, r);
  });
  for (; i < n; ++i) center_radius<T>(l[i], u[i], center[i], radius[i]);
}

// One row of concretisation: sum(A * c - |A| * r).
template <typename T>
VERIFIER_ALWAYS_INLINE T concretize_row(const T* VERIFIER_RESTRICT a, const T* VERIFIER_RESTRICT center,
                                        const T* VERIFIER_RESTRICT radius, int64_t n) {
  constexpr int64_t lanes_count = kLanes<T>;
  const Vec<T> zero{};
  Vec<T> lanes{};
  int64_t i = 0;
  for (; i + lanes_count <= n; i += lanes_count) {
    const Vec<T> x = load(a + i);
    const Vec<T> magnitude = x < zero ? -x : x;
    lanes += x * load(center + i) - magnitude * load(radius + i);
  }
  if (i < n && n >= lanes_count) {  // the last register ends at n; overlapped lanes are left out of the sum
    const int64_t start = n - lanes_count;
    const Vec<T> x = load(a + start);
    const Vec<T> magnitude = x < zero ? -x : x;
    const auto fresh = lane_indices<T>() >= static_cast<decltype(lane_indices<T>()[0])>(i - start);
    lanes += fresh ? x * load(center + start) - magnitude * load(radius + start) : zero;
    i = n;
  }
  T tail = T(0);
  for (; i < n; ++i) {
    const T x = a[i];
    const T magnitude = x < T(0) ? -x : x;
    tail += x * center[i] - magnitude * radius[i];
  }
  return n >= lanes_count ? sum_lanes<T>(lanes) + tail : tail;
}

template <typename T>
void concretize_rows(const ConcretizeArgs<T>& p, int64_t begin, int64_t end, T* scratch) {
  const int64_t n = p.n;
  T* center = scratch;
  T* radius = center + n;
  int64_t formed_for = -1;
  RowCursor at(begin, p.rows);
  for (int64_t r = begin; r < end; ++r, at.next()) {
    const int64_t batch = at.batch;
    const int64_t row = at.row;
    const int64_t box = p.box_layout.batch_stride == 0 ? 0 : batch;
    if (box != formed_for) {
      center_radius_row(p.lower + p.box_layout.offset(box, 0), p.upper + p.box_layout.offset(box, 0), center,
                        radius, n);
      formed_for = box;
    }
    T value = concretize_row(p.a + p.a_layout.offset(batch, row), center, radius, n);
    if (p.bias != nullptr) value += p.bias[batch * p.bias_batch_stride + row];
    p.out[r] = value;
  }
}

template <typename T>
void center_radius_range(const T* lower, const T* upper, T* center, T* radius, int64_t begin, int64_t end) {
  center_radius_row(lower + begin, upper + begin, center + begin, radius + begin, end - begin);
}

// Output boxes of IBP: out_center (+ bias) -+ out_radius, written over the two product buffers.
template <typename T>
void interval_rows(T* VERIFIER_RESTRICT out_center, T* VERIFIER_RESTRICT out_radius, const T* VERIFIER_RESTRICT bias,
                   int64_t outputs, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    T* c = out_center + r * outputs;
    T* rad = out_radius + r * outputs;
    for (int64_t j = 0; j < outputs; ++j) {
      const T center = bias != nullptr ? c[j] + bias[j] : c[j];
      const T radius = rad[j];
      c[j] = center - radius;
      rad[j] = center + radius;
    }
  }
}

}  // namespace

template <typename T>
RowKernels<T> make_row_kernels() {
  return RowKernels<T>{&relaxed_rows<T>,        &relu_rows<T>,      &relu_grad_rows<T>, &concretize_rows<T>,
                       &center_radius_range<T>, &interval_rows<T>, VERIFIER_ISA_NAME};
}

template RowKernels<float> make_row_kernels<float>();
template RowKernels<double> make_row_kernels<double>();

}  // namespace VERIFIER_ISA
}  // namespace verifier_kernels
