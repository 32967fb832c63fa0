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
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "relu_backward_grad: A must be a contiguous [b, K, N]");
  STD_TORCH_CHECK(lower.dim() == 2 && upper.dim() == 2 && lower.size(0) == upper.size(0),
                  "relu_backward_grad: pre-activation bounds must be two [batch, N] tensors of one shape");
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
  p.grad_a_z = data<T>(grad_A_z);
  p.grad_bias = data<T>(grad_bias);
  p.a = data<T>(A);
  p.a_layout = row_layout(A, A, call.batch, call.rows, call.n, "A");
  p.bounds_layout = neuron_layout(lower, A, call.batch, call.n, "lower");
  neuron_layout(upper, A, call.batch, call.n, "upper");
  p.lower = data<T>(lower);
  p.upper = data<T>(upper);
  if (lower_slope) {
    p.alpha = data<T>(*lower_slope);
    p.alpha_layout = row_layout(*lower_slope, A, call.batch, call.rows, call.n, "lower_slope");
  }
  p.grad_a = mutable_data<T>(call.grad_A);
  p.grad_alpha = call.want_alpha ? mutable_data<T>(call.grad_alpha) : nullptr;
  p.rows = call.rows;
  p.n = call.n;
  return p;
}

}  // namespace verifier_kernels
