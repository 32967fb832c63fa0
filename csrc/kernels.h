// Shared host-side helpers of the fused bound-propagation kernels (CPU and CUDA backends).
//
// Every op works on canonical 3-D layouts prepared by the Python wrappers (verifier/kernels):
// coefficients A are [b, K, N] (b = 1 or the output batch B, K specification rows, N neurons) and
// each per-neuron operand is [1 | B, 1 | K, N], broadcast over the batch and/or the rows. The kernels
// read contiguous rows of N values; an operand's batch and row strides are 0 where it broadcasts.
//
// Written against the PyTorch stable ABI (torch/csrc/stable), so one build serves several torch
// versions (TORCH_TARGET_VERSION is set by setup.py).
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "common.h"
#include "formulas.h"

namespace verifier_kernels {

using torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;

// The batch size every operand broadcasts to: the largest leading size (each must be 1 or that size).
inline int64_t broadcast_batch(std::initializer_list<const Tensor*> operands) {
  int64_t batch = 1;
  for (const Tensor* t : operands) {
    if (t != nullptr && t->size(0) != 1) batch = t->size(0);
  }
  for (const Tensor* t : operands) {
    if (t != nullptr) {
      STD_TORCH_CHECK(t->size(0) == 1 || t->size(0) == batch, "verifier kernels: batch sizes ", t->size(0),
                      " and ", batch, " do not broadcast");
    }
  }
  return batch;
}

// Checks that `t` is a contiguous [1 | batch, 1 | rows, n] operand of the same dtype and device as `like`.
inline RowLayout row_layout(const Tensor& t, const Tensor& like, int64_t batch, int64_t rows, int64_t n,
                            const char* name) {
  STD_TORCH_CHECK(t.dim() == 3, "verifier kernels: ", name, " must be [batch, rows, n], got ", t.dim(), " dims");
  STD_TORCH_CHECK(t.size(2) == n, "verifier kernels: ", name, " has ", t.size(2), " neurons, expected ", n);
  STD_TORCH_CHECK(t.size(0) == 1 || t.size(0) == batch, "verifier kernels: ", name, " batch ", t.size(0),
                  " does not broadcast to ", batch);
  STD_TORCH_CHECK(t.size(1) == 1 || t.size(1) == rows, "verifier kernels: ", name, " rows ", t.size(1),
                  " do not broadcast to ", rows);
  STD_TORCH_CHECK(t.scalar_type() == like.scalar_type(), "verifier kernels: ", name, " has another dtype than A");
  STD_TORCH_CHECK(t.get_device() == like.get_device() && t.is_cuda() == like.is_cuda(), "verifier kernels: ",
                  name, " is on another device than A");
  STD_TORCH_CHECK(t.is_contiguous(), "verifier kernels: ", name, " must be contiguous");
  RowLayout layout;
  layout.batch_stride = t.size(0) == 1 ? 0 : t.size(1) * n;
  layout.row_stride = t.size(1) == 1 ? 0 : n;
  return layout;
}

// Checks that `t` is a contiguous [1 | batch, n] per-neuron operand (pre-activation bounds, box bounds).
inline RowLayout neuron_layout(const Tensor& t, const Tensor& like, int64_t batch, int64_t n, const char* name) {
  STD_TORCH_CHECK(t.dim() == 2, "verifier kernels: ", name, " must be [batch, n], got ", t.dim(), " dims");
  STD_TORCH_CHECK(t.size(1) == n, "verifier kernels: ", name, " has ", t.size(1), " neurons, expected ", n);
  STD_TORCH_CHECK(t.size(0) == 1 || t.size(0) == batch, "verifier kernels: ", name, " batch ", t.size(0),
                  " does not broadcast to ", batch);
  STD_TORCH_CHECK(t.scalar_type() == like.scalar_type(), "verifier kernels: ", name, " has another dtype than A");
  STD_TORCH_CHECK(t.get_device() == like.get_device() && t.is_cuda() == like.is_cuda(), "verifier kernels: ",
                  name, " is on another device than A");
  STD_TORCH_CHECK(t.is_contiguous(), "verifier kernels: ", name, " must be contiguous");
  RowLayout layout;
  layout.batch_stride = t.size(0) == 1 ? 0 : n;
  return layout;
}

// Rows per parallel task: about 32k elements of work, so small problems stay on one thread.
inline int64_t grain_rows(int64_t n) { return n > 0 ? (32768 + n - 1) / n : 32768; }

inline bool is_float(const Tensor& t) { return t.scalar_type() == ScalarType::Float; }

inline void check_floating(const Tensor& t) {
  STD_TORCH_CHECK(t.scalar_type() == ScalarType::Float || t.scalar_type() == ScalarType::Double,
                  "verifier kernels support float32 and float64 only");
}

template <typename T>
inline const T* data_or_null(const std::optional<Tensor>& t) {
  return t.has_value() ? static_cast<const T*>(t->const_data_ptr()) : nullptr;
}

template <typename T>
inline const T* data(const Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
}

template <typename T>
inline T* mutable_data(const Tensor& t) {
  return static_cast<T*>(t.mutable_data_ptr());
}

// Runs fn(T(0)) with T the element type of `t` (float or double; check_floating has been called).
template <typename F>
inline void dispatch_floating(const Tensor& t, F&& fn) {
  if (is_float(t)) {
    fn(float(0));
  } else {
    fn(double(0));
  }
}

// A checked call of an op over [batch, rows, n] rows, with its outputs allocated: the new coefficients `out`
// [B, K, N] and the bias [B, K] of a backward step, or the bounds `out` [B, K] of concretize_box (no `bias`).
// The same for both back ends; the *_args functions below turn it into the kernels' arguments.
struct RowsCall {
  Tensor out;
  std::optional<Tensor> bias;
  int64_t batch;
  int64_t rows;
  int64_t n;
};

inline void check_coefficients(const Tensor& A, const char* op) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), op, ": A must be a contiguous [b, K, N]");
}

inline void check_bounds_pair(const Tensor& lower, const Tensor& upper, const char* op) {
  STD_TORCH_CHECK(lower.dim() == 2 && upper.dim() == 2 && lower.size(0) == upper.size(0) &&
                      lower.size(1) == upper.size(1),
                  op, ": lower and upper bounds must be two [batch, N] tensors of one shape");
}

inline RowsCall backward_call(const Tensor& A, int64_t batch) {
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  return RowsCall{torch::stable::new_empty(A, {batch, rows, n}), torch::stable::new_empty(A, {batch, rows}), batch,
                  rows, n};
}

inline RowsCall prepare_relaxed(const Tensor& A, const Tensor& lower_slope,
                                const std::optional<Tensor>& lower_intercept, const Tensor& upper_slope,
                                const std::optional<Tensor>& upper_intercept) {
  check_coefficients(A, "relaxed_backward");
  return backward_call(A, broadcast_batch({&A, &lower_slope, &upper_slope,
                                           lower_intercept ? &*lower_intercept : nullptr,
                                           upper_intercept ? &*upper_intercept : nullptr}));
}

template <typename T>
RelaxedArgs<T> relaxed_args(const RowsCall& call, const Tensor& A, const Tensor& lower_slope,
                            const std::optional<Tensor>& lower_intercept, const Tensor& upper_slope,
                            const std::optional<Tensor>& upper_intercept) {
  const int64_t batch = call.batch, rows = call.rows, n = call.n;
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
  p.out = mutable_data<T>(call.out);
  p.bias = mutable_data<T>(*call.bias);
  p.rows = rows;
  p.n = n;
  return p;
}

inline RowsCall prepare_relu(const Tensor& A, const Tensor& lower, const Tensor& upper,
                             const std::optional<Tensor>& lower_slope) {
  check_coefficients(A, "relu_backward");
  check_bounds_pair(lower, upper, "relu_backward");
  return backward_call(A, broadcast_batch({&A, &lower, lower_slope ? &*lower_slope : nullptr}));
}

// The operands a ReLU step and its gradient share (A, the pre-activation bounds, the optional lower slopes, the
// sizes), checked and set in `p`, a ReluArgs<T> or a ReluGradArgs<T>.
template <typename T, typename Args>
void set_relu_operands(Args& p, int64_t batch, int64_t rows, int64_t n, const Tensor& A, const Tensor& lower,
                       const Tensor& upper, const std::optional<Tensor>& lower_slope) {
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
  p.rows = rows;
  p.n = n;
}

template <typename T>
ReluArgs<T> relu_args(const RowsCall& call, const Tensor& A, const Tensor& lower, const Tensor& upper,
                      const std::optional<Tensor>& lower_slope) {
  ReluArgs<T> p{};
  set_relu_operands<T>(p, call.batch, call.rows, call.n, A, lower, upper, lower_slope);
  p.out = mutable_data<T>(call.out);
  p.bias = mutable_data<T>(*call.bias);
  return p;
}

inline RowsCall prepare_concretize(const Tensor& A, const std::optional<Tensor>& bias, const Tensor& lower,
                                   const Tensor& upper) {
  check_coefficients(A, "concretize_box");
  check_bounds_pair(lower, upper, "concretize_box");
  const int64_t batch = broadcast_batch({&A, &lower, &upper, bias ? &*bias : nullptr});
  return RowsCall{torch::stable::new_empty(A, {batch, A.size(1)}), std::nullopt, batch, A.size(1), A.size(2)};
}

template <typename T>
ConcretizeArgs<T> concretize_args(const RowsCall& call, const Tensor& A, const std::optional<Tensor>& bias,
                                  const Tensor& lower, const Tensor& upper) {
  ConcretizeArgs<T> p{};
  p.a = data<T>(A);
  p.a_layout = row_layout(A, A, call.batch, call.rows, call.n, "A");
  p.box_layout = neuron_layout(lower, A, call.batch, call.n, "lower");
  neuron_layout(upper, A, call.batch, call.n, "upper");
  p.lower = data<T>(lower);
  p.upper = data<T>(upper);
  if (bias) {
    p.bias = data<T>(*bias);
    p.bias_batch_stride = neuron_layout(*bias, A, call.batch, call.rows, "bias").batch_stride;
  }
  p.out = mutable_data<T>(call.out);
  p.rows = call.rows;
  p.n = call.n;
  return p;
}

// interval_linear's operands: boxes [M, n], weight and |weight| [out, n], optional bias [out], one dtype.
inline void check_interval_linear(const Tensor& lower, const Tensor& upper, const Tensor& weight,
                                  const Tensor& weight_abs, const std::optional<Tensor>& bias) {
  check_floating(lower);
  check_bounds_pair(lower, upper, "interval_linear");
  STD_TORCH_CHECK(weight.dim() == 2 && weight_abs.dim() == 2 && weight.size(1) == lower.size(1) &&
                      weight_abs.size(0) == weight.size(0) && weight_abs.size(1) == weight.size(1),
                  "interval_linear: weight and weight_abs must be [out, n]");
  STD_TORCH_CHECK(lower.is_contiguous() && upper.is_contiguous(), "interval_linear: boxes must be contiguous");
  STD_TORCH_CHECK(weight.scalar_type() == lower.scalar_type() && weight_abs.scalar_type() == lower.scalar_type() &&
                      upper.scalar_type() == lower.scalar_type(),
                  "interval_linear: all operands must have one dtype");
  if (bias) {
    STD_TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0) && bias->is_contiguous() &&
                        bias->scalar_type() == lower.scalar_type(),
                    "interval_linear: bias must be a contiguous [out] vector");
  }
}

// relu_backward_grad's operands checked and its outputs allocated, the same for both back ends.
struct ReluGradCall {
  Tensor grad_A;      // [B, K, N]
  Tensor grad_alpha;  // [B, K, N], or [0, K, N] when not wanted
  int64_t batch;
  int64_t rows;
  int64_t n;
  bool want_alpha;
};

inline ReluGradCall prepare_relu_grad(const Tensor& grad_A_z, const Tensor& grad_bias, const Tensor& A,
                                      const Tensor& lower, const Tensor& upper,
                                      const std::optional<Tensor>& lower_slope, bool alpha_grad) {
  check_coefficients(A, "relu_backward_grad");
  check_bounds_pair(lower, upper, "relu_backward_grad");
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, lower_slope ? &*lower_slope : nullptr});
  STD_TORCH_CHECK(grad_A_z.dim() == 3 && grad_A_z.size(0) == batch && grad_A_z.size(1) == rows &&
                      grad_A_z.size(2) == n && grad_A_z.is_contiguous(),
                  "relu_backward_grad: grad_A_z must be a contiguous [B, K, N] like the op's output");
  STD_TORCH_CHECK(grad_bias.dim() == 2 && grad_bias.size(0) == batch && grad_bias.size(1) == rows &&
                      grad_bias.is_contiguous(),
                  "relu_backward_grad: grad_bias must be a contiguous [B, K] like the op's output");
  row_layout(grad_A_z, A, batch, rows, n, "grad_A_z");
  const bool want_alpha = alpha_grad && lower_slope.has_value();
  return ReluGradCall{torch::stable::new_empty(A, {batch, rows, n}),
                      torch::stable::new_empty(A, {want_alpha ? batch : 0, rows, n}), batch, rows, n, want_alpha};
}

// The kernels' arguments of a prepared call (layouts checked against A).
template <typename T>
ReluGradArgs<T> relu_grad_args(const ReluGradCall& call, const Tensor& grad_A_z, const Tensor& grad_bias,
                               const Tensor& A, const Tensor& lower, const Tensor& upper,
                               const std::optional<Tensor>& lower_slope) {
  ReluGradArgs<T> p{};
  set_relu_operands<T>(p, call.batch, call.rows, call.n, A, lower, upper, lower_slope);
  p.grad_a_z = data<T>(grad_A_z);
  p.grad_bias = data<T>(grad_bias);
  p.grad_a = mutable_data<T>(call.grad_A);
  p.grad_alpha = call.want_alpha ? mutable_data<T>(call.grad_alpha) : nullptr;
  return p;
}

}  // namespace verifier_kernels
