"""Entry points: load a network from an ONNX file or a torch module."""

from __future__ import annotations

import os

import onnx
import torch

from verifier.errors import ModelLoadError
from verifier.frontend.onnx_loader import onnx_to_graph, read_model
from verifier.frontend.simplify import check_finite, simplify
from verifier.frontend.torch_loader import shared_dtype, torch_to_graph
from verifier.network import Network
from verifier.threads import ensure_threads


def load_onnx(source: str | os.PathLike | bytes | onnx.ModelProto, dtype: torch.dtype | None = None) -> Network:
    """Load an ONNX model into the graph IR, simplified (BatchNorm folded, Identity/Dropout dropped).

    ``dtype`` casts the weights (default: the model's input type, usually float32). Raises
    :class:`~verifier.errors.ModelLoadError` (or a subclass) with a message naming the file and node on
    malformed files, unsupported operators, NaN weights or inconsistent shapes.
    """
    ensure_threads()
    where = str(source) if isinstance(source, (str, os.PathLike)) else "the model"
    model = read_model(source)
    graph = simplify(onnx_to_graph(model, where, dtype).build())
    check_finite(graph)
    return Network(graph, source=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None)


def from_torch(
    module: torch.nn.Module,
    example_input: torch.Tensor,
    dtype: torch.dtype | None = None,
    share_parameters: bool = False,
) -> Network:
    """Convert a torch model built from supported layers (Linear, Conv, BatchNorm, ReLU, Sigmoid, Tanh,
    Flatten, reshapes, residual additions) into the graph IR.

    ``example_input`` fixes the input shape (include the batch dimension of 1 if the module expects one).
    The converted network is checked against ``module(example_input)`` (in ``eval()`` mode: BatchNorm uses
    its running statistics).

    ``share_parameters=False`` (default): the weights are copied; the network is a constant snapshot.
    ``share_parameters=True``: the network holds the module's live parameters (Linear, Conv, ConvTranspose,
    BatchNorm), no copy and no detach; ``|W|`` and the BatchNorm folded into the layer before it are
    recomputed at each use. Bounds computed with the engine (:mod:`verifier.bounds`, :mod:`verifier.training`)
    are then differentiable in the parameters and follow every optimiser step (certified training). The
    network computes in the parameters' dtype (``dtype`` must be None or that dtype; cast the module instead).
    """
    ensure_threads()
    if share_parameters and dtype is not None and dtype != shared_dtype(module):
        raise ModelLoadError(
            f"share_parameters=True computes in the module's dtype ({shared_dtype(module)}), not {dtype}: "
            "cast the module (module.to(dtype)) instead"
        )
    was_training = module.training
    module.eval()
    try:
        graph = simplify(torch_to_graph(module, example_input, share_parameters).build())
        check_finite(graph)
        network = Network(graph)
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
    return network.to(dtype) if dtype is not None and not share_parameters else network
