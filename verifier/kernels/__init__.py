"""Fused kernels of the bound-propagation hot loops, each beside its pure-PyTorch reference.

=======================  =================================================================================
``relaxed_backward``     CROWN backward step through an elementwise relaxation (split, slopes, bias)
``relu_backward``        the same through a ReLU, its relaxation formed from the pre-activation bounds
``concretize_box``       ``min A . x + bias`` over boxes, centre/radius form without ``|A|``
``interval_linear``      IBP through ``x W^T + b``: ``W c`` and ``|W| r`` with the box forming fused
=======================  =================================================================================

The compiled kernels (``csrc/``, ``torch.ops.verifier.*``) run when available (see
:mod:`verifier.kernels.library` and ``VERIFIER_KERNELS=native|torch``); otherwise, and for operands they do
not cover, the references in :mod:`verifier.primitives` run: they are the specification and the oracle of the
parity tests. Every op has fake (meta) and autograd rules, so alpha-CROWN can differentiate through it and
``torch.compile`` can trace it.
"""

from verifier.kernels.concretize import concretize_box
from verifier.kernels.interval import interval_linear
from verifier.kernels.library import backend, cuda_kernels_available, native_available, set_backend
from verifier.kernels.relaxation import relaxed_backward, relu_backward

__all__ = [
    "backend",
    "concretize_box",
    "cuda_kernels_available",
    "interval_linear",
    "native_available",
    "relaxed_backward",
    "relu_backward",
    "set_backend",
]
