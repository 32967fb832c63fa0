// Schemas of the fused bound-propagation kernels, declared once. Each backend (cpu/*.cpp, cuda/*.cu)
// adds its implementations in its own STABLE_TORCH_LIBRARY_IMPL block; the Python side
// (verifier/kernels) adds the fake (meta) and autograd rules and the pure-PyTorch references.
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY(verifier, m) {
  // CROWN backward step through an elementwise relaxation (Zhang et al. 2018, Thm 3.2):
  // A [b,K,N]; slopes and intercepts [1|B, 1|K, N]; returns (A_z [B,K,N], bias [B,K]).
  m.def(
      "relaxed_backward(Tensor A, Tensor lower_slope, Tensor? lower_intercept, Tensor upper_slope, "
      "Tensor? upper_intercept) -> (Tensor, Tensor)");
  // The same step through a ReLU, its relaxation computed from the pre-activation bounds [1|B, N];
  // lower_slope [1|B, 1|K, N] (alpha-CROWN) replaces the adaptive lower slope on unstable neurons.
  m.def("relu_backward(Tensor A, Tensor lower, Tensor upper, Tensor? lower_slope) -> (Tensor, Tensor)");
  // Its gradient with respect to A and lower_slope, given the gradients of its outputs (grad_A_z [B,K,N],
  // grad_bias [B,K]): (grad_A [B,K,N], grad_alpha [B,K,N], or [0,K,N] when alpha_grad is false or there
  // is no lower_slope), before summing over broadcast dimensions.
  m.def(
      "relu_backward_grad(Tensor grad_A_z, Tensor grad_bias, Tensor A, Tensor lower, Tensor upper, "
      "Tensor? lower_slope, bool alpha_grad) -> (Tensor, Tensor)");
  // Minimum of A . x + bias over the boxes [lower, upper] ([1|B, N]) in centre/radius form: [B, K].
  m.def("concretize_box(Tensor A, Tensor? bias, Tensor lower, Tensor upper) -> Tensor");
  // IBP through x W^T + b for boxes [M, n]: (lower, upper) [M, out].
  m.def(
      "interval_linear(Tensor lower, Tensor upper, Tensor weight, Tensor weight_abs, Tensor? bias) "
      "-> (Tensor, Tensor)");
  // The instruction-set variant of the CPU kernels in use: "avx512", "avx2" or "baseline".
  m.def("cpu_variant() -> str");
}
