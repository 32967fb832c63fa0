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

}  // namespace verifier_kernels
