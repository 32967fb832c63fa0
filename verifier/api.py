"""Entry points: load a network from an ONNX file or a torch module."""

from __future__ import annotations

import os

import numpy as np
import onnx
import torch

import verifier.ops  # noqa: F401  (registers the operator converters)
from verifier.cancel import TimeLimitReached
from verifier.errors import ModelLoadError, ResourceLimitError, ShapeError, VerifierError, shorten
from verifier.frontend.onnx_loader import onnx_to_graph, read_model
from verifier.frontend.simplify import check_finite, simplify
from verifier.frontend.torch_loader import shared_dtype, torch_to_graph
from verifier.network import Network
from verifier.threads import ensure_threads


def load_onnx(source: str | os.PathLike | bytes | onnx.ModelProto, dtype: torch.dtype | None = None,
              memory_limit: int | None = None) -> Network:
    """Load an ONNX model into the graph IR, simplified (BatchNorm folded, Identity/Dropout dropped).

    ``dtype`` casts the weights (default: the model's input type, usually float32). ``memory_limit``: bytes
    the model's tensors and folded constants may take (default: a quarter of the available memory,
    :func:`verifier.limits.default_memory_limit`); larger ones are refused before they are created. Raises
    :class:`~verifier.errors.ModelLoadError` (or a subclass) with a message naming the file and node on
    malformed files, unsupported operators, NaN weights or inconsistent shapes, and
    :class:`~verifier.errors.ResourceLimitError` on tensors beyond the limit; never another exception (a
    time limit active around the call, :func:`verifier.cancel.time_limit`, still ends it).
    """
    ensure_threads()
    where = str(source) if isinstance(source, (str, os.PathLike)) else "the model"
    with model_errors(where):
        model = read_model(source, memory_limit, where)
        graph = simplify(onnx_to_graph(model, where, dtype, memory_limit).build())
        check_finite(graph)
        return Network(graph, source=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None)


def from_torch(
    module: torch.nn.Module,
    example_input: torch.Tensor | np.ndarray,
    dtype: torch.dtype | None = None,
    share_parameters: bool = False,
) -> Network:
    """Convert a torch model built from supported layers (Linear, Conv, BatchNorm, ReLU, Sigmoid, Tanh,
    Flatten, reshapes, residual additions) into the graph IR.

    ``example_input`` fixes the input shape (include the batch dimension of 1 if the module expects one).
    The converted network is checked against ``module(example_input)`` (in ``eval()`` mode: BatchNorm uses
    its running statistics); the module is kept as ``network.module``, the independent executor that checks
    counterexamples. The network is put on the device of the module's parameters.

    ``share_parameters=False`` (default): the weights are copied; the network is a constant snapshot.
    ``share_parameters=True``: the network holds the module's live parameters (Linear, Conv, ConvTranspose,
    BatchNorm), no copy and no detach; ``|W|`` and the BatchNorm folded into the layer before it are
    recomputed at each use. Bounds computed with the engine (:mod:`verifier.bounds`, :mod:`verifier.training`)
    are then differentiable in the parameters and follow every optimiser step (certified training). The
    network computes in the parameters' dtype (``dtype`` must be None or that dtype; cast the module instead).
    """
    ensure_threads()
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")
    if share_parameters and dtype is not None and dtype != shared_dtype(module):
        raise ModelLoadError(
            f"share_parameters=True computes in the module's dtype ({shared_dtype(module)}), not {dtype}: "
            "cast the module (module.to(dtype)) instead"
        )
    try:
        example_input = torch.as_tensor(example_input)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ShapeError(f"the example input is not a tensor: {shorten(error)}") from None
    if not example_input.is_floating_point() or not bool(torch.isfinite(example_input).all()):
        raise ShapeError("the example input must be a tensor of finite floating-point values")
    was_training = module.training
    module.eval()
    try:
        with model_errors("the torch module"):
            graph = simplify(torch_to_graph(module, example_input, share_parameters).build())
            check_finite(graph)
            parameter = next(iter(module.parameters()), None)
            # the converter's own constants (pooling windows, indices) are made on the CPU: all go where the module is
            network = Network(graph).to(parameter.device if parameter is not None else "cpu")
            with torch.no_grad():
                expected = module(example_input.to(network.dtype)).reshape(-1)
                actual = network.forward(example_input).reshape(-1)
        expected = expected.to(actual.dtype)
        same = expected.shape == actual.shape and torch.allclose(expected, actual, rtol=1e-4, atol=1e-5)
        if not same:
            raise ModelLoadError(
                "the converted network does not reproduce the torch module on the example input; "
                "the module uses an operation the converter does not model"
            )
    finally:
        module.train(was_training)
    network.module = module
    return network.to(dtype) if dtype is not None and not share_parameters else network


class model_errors:
    """Within the block, anything but a :class:`VerifierError` (or a time limit, or an interrupt) becomes a
    one-line :class:`ModelLoadError` about ``where``; running out of memory a :class:`ResourceLimitError`."""

    def __init__(self, where: str):
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, (VerifierError, TimeLimitReached)) or not isinstance(error, Exception):
            return False
        if isinstance(error, MemoryError) or "can't allocate memory" in str(error):
            raise ResourceLimitError(f"{self.where}: not enough memory to load the model") from None
        if isinstance(error, RecursionError):
            raise ModelLoadError(f"{self.where}: the model is nested too deeply to load") from None
        raise ModelLoadError(f"{self.where}: cannot load the model: {type(error).__name__}: "
                             f"{shorten(error, 160)}") from None
