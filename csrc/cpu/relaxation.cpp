// CPU kernels of the CROWN backward step through an elementwise relaxation (relaxed_backward) and through a
// ReLU whose relaxation is formed on the fly from the pre-activation bounds (relu_backward).
//
// One pass over A per row: the positive/negative split, the slope selection and the intercept sum happen in
// registers, so neither A+, A- nor the products are materialised (the reference makes ~7 passes).
#include "../formulas.h"
#include "../kernels.h"
#include "vectorize.h"

#include <vector>

namespace verifier_kernels {
namespace {

// One row of the step: out = A+ * lower_slope + A- * upper_slope; returns sum(A+ * lower_intercept + A- *
// upper_intercept) (CROWN, Zhang et al. 2018, Thm 3.2: a non-negative coefficient takes the lower line).
template <typename T, bool kLowerIntercept, bool kUpperIntercept>
VERIFIER_ALWAYS_INLINE T relaxed_row(const T* VERIFIER_RESTRICT a, const T* VERIFIER_RESTRICT lower_slope,
                                     const T* VERIFIER_RESTRICT upper_slope,
                                     const T* VERIFIER_RESTRICT lower_intercept,
                                     const T* VERIFIER_RESTRICT upper_intercept, T* VERIFIER_RESTRICT out,
                                     int64_t n) {
  constexpr int64_t lanes_count = kLanes<T>;
  const Vec<T> zero = broadcast(T(0));
  Vec<T> lanes = zero;
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
  return sum_lanes<T>(lanes) + tail;
}

template <typename T>
struct RelaxedArgs {
  const T* a;
  RowLayout a_layout;
  const T* lower_slope;
  RowLayout lower_slope_layout;
  const T* lower_intercept;
  RowLayout lower_intercept_layout;
  const T* upper_slope;
  RowLayout upper_slope_layout;
  const T* upper_intercept;
  RowLayout upper_intercept_layout;
  T* out;
  T* bias;
  int64_t rows;  // K
  int64_t n;
};

template <typename T, bool kLowerIntercept, bool kUpperIntercept>
VERIFIER_CPU_CLONES void relaxed_rows(const RelaxedArgs<T>& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t batch = r / p.rows;
    const int64_t row = r % p.rows;
    p.bias[r] = relaxed_row<T, kLowerIntercept, kUpperIntercept>(
        p.a + p.a_layout.offset(batch, row), p.lower_slope + p.lower_slope_layout.offset(batch, row),
        p.upper_slope + p.upper_slope_layout.offset(batch, row),
        kLowerIntercept ? p.lower_intercept + p.lower_intercept_layout.offset(batch, row) : nullptr,
        kUpperIntercept ? p.upper_intercept + p.upper_intercept_layout.offset(batch, row) : nullptr,
        p.out + r * p.n, p.n);
  }
}

template <typename T>
void relaxed_backward_typed(const RelaxedArgs<T>& p, int64_t total_rows) {
  const bool has_lower = p.lower_intercept != nullptr;
  const bool has_upper = p.upper_intercept != nullptr;
  torch::stable::parallel_for(0, total_rows, grain_rows(p.n), [&](int64_t begin, int64_t end) {
    if (has_lower && has_upper) {
      relaxed_rows<T, true, true>(p, begin, end);
    } else if (has_upper) {
      relaxed_rows<T, false, true>(p, begin, end);
    } else if (has_lower) {
      relaxed_rows<T, true, false>(p, begin, end);
    } else {
      relaxed_rows<T, false, false>(p, begin, end);
    }
  });
}

std::tuple<Tensor, Tensor> relaxed_backward_cpu(Tensor A, Tensor lower_slope, std::optional<Tensor> lower_intercept,
                                                Tensor upper_slope, std::optional<Tensor> upper_intercept) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3, "relaxed_backward: A must be [b, K, N]");
  STD_TORCH_CHECK(A.is_contiguous(), "relaxed_backward: A must be contiguous");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower_slope, &upper_slope,
                                         lower_intercept ? &*lower_intercept : nullptr,
                                         upper_intercept ? &*upper_intercept : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows, n});
  Tensor bias = torch::stable::new_empty(A, {batch, rows});
  auto fill = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    RelaxedArgs<T> p{};
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
    p.rows = rows;
    p.n = n;
    relaxed_backward_typed<T>(p, batch * rows);
  };
  if (is_float(A)) {
    fill(float(0));
  } else {
    fill(double(0));
  }
  return {out, bias};
}

// The ReLU relaxation of one box's n neurons (relu_relaxation, lane by lane).
template <typename T>
VERIFIER_ALWAYS_INLINE void relu_relaxation_row(const T* VERIFIER_RESTRICT l, const T* VERIFIER_RESTRICT u,
                                                T* VERIFIER_RESTRICT lower_slope, T* VERIFIER_RESTRICT upper_slope,
                                                T* VERIFIER_RESTRICT upper_intercept, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    Vec<T> ls, us, ui;
    relu_relaxation<T, Vec<T>>(load(l + i), load(u + i), ls, us, ui);
    store(lower_slope + i, ls);
    store(upper_slope + i, us);
    store(upper_intercept + i, ui);
  }
  for (; i < n; ++i) relu_relaxation<T>(l[i], u[i], lower_slope[i], upper_slope[i], upper_intercept[i]);
}

// The lower slopes of one row: alpha on unstable neurons, the relaxation's own slope on stable ones.
template <typename T>
VERIFIER_ALWAYS_INLINE void alpha_slope_row(const T* VERIFIER_RESTRICT l, const T* VERIFIER_RESTRICT u,
                                            const T* VERIFIER_RESTRICT alpha, const T* VERIFIER_RESTRICT stable,
                                            T* VERIFIER_RESTRICT out, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    store(out + i, relu_unstable(load(l + i), load(u + i)) ? load(alpha + i) : load(stable + i));
  }
  for (; i < n; ++i) out[i] = relu_unstable(l[i], u[i]) ? alpha[i] : stable[i];
}

template <typename T>
struct ReluArgs {
  const T* a;
  RowLayout a_layout;
  const T* lower;
  RowLayout bounds_layout;
  const T* upper;
  const T* alpha;  // optional lower slopes of unstable neurons
  RowLayout alpha_layout;
  T* out;
  T* bias;
  int64_t rows;
  int64_t n;
};

template <typename T, bool kAlpha>
VERIFIER_CPU_CLONES void relu_rows(const ReluArgs<T>& p, int64_t begin, int64_t end) {
  const int64_t n = p.n;
  // the relaxation of one box's neurons, formed once and reused by its K rows
  std::vector<T> scratch(static_cast<size_t>(4 * n));
  T* lower_slope = scratch.data();
  T* upper_slope = lower_slope + n;
  T* upper_intercept = upper_slope + n;
  T* row_slope = upper_intercept + n;
  int64_t formed_for = -1;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t batch = r / p.rows;
    const int64_t row = r % p.rows;
    const T* l = p.lower + p.bounds_layout.offset(batch, 0);
    const T* u = p.upper + p.bounds_layout.offset(batch, 0);
    const int64_t box = p.bounds_layout.batch_stride == 0 ? 0 : batch;
    if (box != formed_for) {
      relu_relaxation_row(l, u, lower_slope, upper_slope, upper_intercept, n);
      formed_for = box;
    }
    const T* slope = lower_slope;
    if constexpr (kAlpha) {
      alpha_slope_row(l, u, p.alpha + p.alpha_layout.offset(batch, row), lower_slope, row_slope, n);
      slope = row_slope;
    }
    p.bias[r] = relaxed_row<T, false, true>(p.a + p.a_layout.offset(batch, row), slope, upper_slope, nullptr,
                                            upper_intercept, p.out + r * n, n);
  }
}

std::tuple<Tensor, Tensor> relu_backward_cpu(Tensor A, Tensor lower, Tensor upper, std::optional<Tensor> lower_slope) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3, "relu_backward: A must be [b, K, N]");
  STD_TORCH_CHECK(A.is_contiguous(), "relu_backward: A must be contiguous");
  STD_TORCH_CHECK(lower.dim() == 2 && upper.dim() == 2 && lower.size(0) == upper.size(0),
                  "relu_backward: pre-activation bounds must be two [batch, N] tensors of one shape");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, lower_slope ? &*lower_slope : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows, n});
  Tensor bias = torch::stable::new_empty(A, {batch, rows});
  auto fill = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    ReluArgs<T> p{};
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
    p.rows = rows;
    p.n = n;
    torch::stable::parallel_for(0, batch * rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      if (p.alpha != nullptr) {
        relu_rows<T, true>(p, begin, end);
      } else {
        relu_rows<T, false>(p, begin, end);
      }
    });
  };
  if (is_float(A)) {
    fill(float(0));
  } else {
    fill(double(0));
  }
  return {out, bias};
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("relaxed_backward", TORCH_BOX(&verifier_kernels::relaxed_backward_cpu));
  m.impl("relu_backward", TORCH_BOX(&verifier_kernels::relu_backward_cpu));
}
