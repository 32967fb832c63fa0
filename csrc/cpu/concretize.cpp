// CPU kernel of box concretisation: min over lower <= x <= upper of A . x + bias = A . c - |A| . r + bias,
// one pass over A per row, without materialising |A| (the reference makes two products and an |A| copy).
#include "../formulas.h"
#include "../kernels.h"
#include "vectorize.h"

#include <vector>

namespace verifier_kernels {
namespace {

template <typename T>
VERIFIER_ALWAYS_INLINE T concretize_row(const T* VERIFIER_RESTRICT a, const T* VERIFIER_RESTRICT center,
                                        const T* VERIFIER_RESTRICT radius, int64_t n) {
  constexpr int64_t lanes_count = kLanes<T>;
  const Vec<T> zero = broadcast(T(0));
  Vec<T> lanes = zero;
  int64_t i = 0;
  for (; i + lanes_count <= n; i += lanes_count) {
    const Vec<T> x = load(a + i);
    const Vec<T> magnitude = x < zero ? -x : x;
    lanes += x * load(center + i) - magnitude * load(radius + i);
  }
  T tail = T(0);
  for (; i < n; ++i) {
    const T x = a[i];
    const T magnitude = x < T(0) ? -x : x;
    tail += x * center[i] - magnitude * radius[i];
  }
  return sum_lanes<T>(lanes) + tail;
}

template <typename T>
VERIFIER_ALWAYS_INLINE void center_radius_row(const T* VERIFIER_RESTRICT l, const T* VERIFIER_RESTRICT u,
                                              T* VERIFIER_RESTRICT center, T* VERIFIER_RESTRICT radius, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes<T> <= n; i += kLanes<T>) {
    Vec<T> c, r;
    center_radius<T, Vec<T>>(load(l + i), load(u + i), c, r);
    store(center + i, c);
    store(radius + i, r);
  }
  for (; i < n; ++i) center_radius<T>(l[i], u[i], center[i], radius[i]);
}

template <typename T>
struct ConcretizeArgs {
  const T* a;
  RowLayout a_layout;
  const T* bias;  // optional [1|B, K]
  int64_t bias_batch_stride;
  const T* lower;
  const T* upper;
  RowLayout box_layout;
  T* out;
  int64_t rows;
  int64_t n;
};

template <typename T>
VERIFIER_CPU_CLONES void concretize_rows(const ConcretizeArgs<T>& p, int64_t begin, int64_t end) {
  const int64_t n = p.n;
  std::vector<T> scratch(static_cast<size_t>(2 * n));
  T* center = scratch.data();
  T* radius = center + n;
  int64_t formed_for = -1;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t batch = r / p.rows;
    const int64_t row = r % p.rows;
    const int64_t box = p.box_layout.batch_stride == 0 ? 0 : batch;
    if (box != formed_for) {
      const T* l = p.lower + p.box_layout.offset(box, 0);
      const T* u = p.upper + p.box_layout.offset(box, 0);
      center_radius_row(l, u, center, radius, n);
      formed_for = box;
    }
    T value = concretize_row(p.a + p.a_layout.offset(batch, row), center, radius, n);
    if (p.bias != nullptr) value += p.bias[batch * p.bias_batch_stride + row];
    p.out[r] = value;
  }
}

Tensor concretize_box_cpu(Tensor A, std::optional<Tensor> bias, Tensor lower, Tensor upper) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3, "concretize_box: A must be [b, K, N]");
  STD_TORCH_CHECK(A.is_contiguous(), "concretize_box: A must be contiguous");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, &upper, bias ? &*bias : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows});
  auto fill = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    ConcretizeArgs<T> p{};
    p.a = data<T>(A);
    p.a_layout = row_layout(A, A, batch, rows, n, "A");
    p.box_layout = neuron_layout(lower, A, batch, n, "lower");
    RowLayout upper_layout = neuron_layout(upper, A, batch, n, "upper");
    STD_TORCH_CHECK(upper_layout.batch_stride == p.box_layout.batch_stride,
                    "concretize_box: lower and upper must have one shape");
    p.lower = data<T>(lower);
    p.upper = data<T>(upper);
    if (bias) {
      p.bias = data<T>(*bias);
      p.bias_batch_stride = neuron_layout(*bias, A, batch, rows, "bias").batch_stride;
    }
    p.out = mutable_data<T>(out);
    p.rows = rows;
    p.n = n;
    torch::stable::parallel_for(0, batch * rows, grain_rows(n),
                                [&](int64_t begin, int64_t end) { concretize_rows<T>(p, begin, end); });
  };
  if (is_float(A)) {
    fill(float(0));
  } else {
    fill(double(0));
  }
  return out;
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CPU, m) {
  m.impl("concretize_box", TORCH_BOX(&verifier_kernels::concretize_box_cpu));
}
