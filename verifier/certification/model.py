"""The model a certification run works on: the network as given, and the same function on raw inputs.

* **Input normalisation** (``mean``/``std`` per channel, for models trained on ``(x - mean) / std``) is
  folded into the network as a first elementwise affine layer, so every method works in the raw input
  space, where epsilon, the valid domain and the data live. Without normalisation that first layer is the
  identity. Either way it is the single *entry* node reading the input, where the L2-ball concretisation
  of :mod:`verifier.certification.balls` hooks in.
* **Small convolutions become dense layers** (the same function: the Toeplitz matrix of the convolution
  with its bias): on small inputs such as 8x8 digits a dense product over many boxes is several times
  faster than ``conv_transpose`` over the same boxes, and the Lipschitz bound of a dense layer is exact.
* The network **as given** (in its own, normalised input space) is kept for the complete verifier, whose
  counterexamples onnxruntime re-checks on the original file; boxes are mapped into that space exactly
  (:meth:`PreparedModel.to_model_space`).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from verifier.device import DeviceLike, resolve_device
from verifier.errors import ShapeError, VerifierError
from verifier.ir import Graph, Node
from verifier.network import Network

#: convolutions whose Toeplitz matrix has at most this many entries are made dense
DENSE_CONV_LIMIT = 1 << 20

RAW_INPUT = "certify/raw_input"


@dataclass
class PreparedModel:
    """``network``: raw input -> logits (entry node first, small convolutions dense); ``original``: the model
    as given; ``entry``: the entry node's name; ``mean``/``std``: the normalisation as float64 arrays of the
    input's shape (``None`` without); ``source``: the ONNX path when the model came from a file."""

    network: Network
    original: Network
    entry: str
    mean: np.ndarray | None
    std: np.ndarray | None
    source: str | None

    @property
    def n_classes(self) -> int:
        return self.network.output_size

    @property
    def device(self) -> torch.device:
        return self.network.device

    def to_model_space(self, x: np.ndarray) -> np.ndarray:
        """Raw inputs (flat, float64) mapped into the model's own input space, ``(x - mean) / std``."""
        if self.mean is None:
            return x
        return (x - self.mean.reshape(-1)) / self.std.reshape(-1)

    def box_to_model_space(self, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A raw box (flat, float64) as a box of the model's input space that contains its image: the map is
        increasing per element (``std > 0``); the ends are moved outwards by a few float64 roundings."""
        if self.mean is None:
            return lower, upper
        low, high = self.to_model_space(lower), self.to_model_space(upper)
        pad = 8 * np.finfo(np.float64).eps * (1 + np.maximum(np.abs(low), np.abs(high)))
        return low - pad, high + pad


def prepare_model(model, example: np.ndarray, mean=None, std=None, device: DeviceLike = None) -> PreparedModel:
    """A :class:`PreparedModel` from an ONNX path, a :class:`~verifier.network.Network` or a
    ``torch.nn.Module`` (converted with ``example``, one input with its batch dimension of 1), moved to
    ``device`` (``None``: where the model is; a given network is copied, never modified)."""
    source = None
    if isinstance(model, Network):
        original = model
        source = None if model.source is None else os.fspath(model.source)
    elif isinstance(model, (str, os.PathLike)):
        from verifier.api import load_onnx

        original = load_onnx(model)
        source = os.fspath(model)
    elif isinstance(model, torch.nn.Module):
        from verifier.api import from_torch

        parameter = next(iter(model.parameters()), None)
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        device_of = parameter.device if parameter is not None else torch.device("cpu")
        original = from_torch(model, torch.as_tensor(example, dtype=dtype, device=device_of))
    else:
        raise VerifierError(f"the model must be an ONNX path, a verifier Network or a torch.nn.Module, got "
                            f"{type(model).__name__}")
    if device is not None:
        target = resolve_device(device)
        if target != original.device:
            original = copy.deepcopy(original).to(target)
    mean_t, std_t = _normalization(original, mean, std)
    network = Network(_certification_graph(original, mean_t, std_t), source=None)
    network.dtype, network.device = original.dtype, original.device
    as_array = (lambda t: None if t is None else
                np.broadcast_to(t.double().cpu().numpy(), original.input_shape).copy())
    return PreparedModel(network, original, original.graph.input_name, as_array(mean_t), as_array(std_t), source)


def _normalization(network: Network, mean, std) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-channel ``mean``/``std`` as tensors broadcasting against one input (``None`` when not given)."""
    if mean is None and std is None:
        return None, None
    shape = network.input_shape
    mean = np.atleast_1d(np.asarray(0.0 if mean is None else mean, dtype=np.float64)).reshape(-1)
    std = np.atleast_1d(np.asarray(1.0 if std is None else std, dtype=np.float64)).reshape(-1)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std <= 0).any():
        raise VerifierError(f"--mean must be finite and --std finite and > 0, got mean {mean.tolist()}, "
                            f"std {std.tolist()}")
    channel_axis = 1 if len(shape) >= 2 else 0
    channels = shape[channel_axis] if shape else 1

    def shaped(values: np.ndarray, name: str) -> torch.Tensor:
        if values.size == 1:
            target = (1,)
        elif values.size == channels:
            target = [1] * len(shape)
            target[channel_axis] = channels
        elif values.size == math.prod(shape):
            target = shape
        else:
            raise ShapeError(f"{name} has {values.size} values; the model input {tuple(shape)} has {channels} "
                             f"channel(s) (axis {channel_axis}): give 1 or {channels} values")
        return torch.tensor(values.reshape(target), dtype=network.dtype, device=network.device)

    return shaped(mean, "--mean"), shaped(std, "--std")


def _certification_graph(network: Network, mean: torch.Tensor | None, std: torch.Tensor | None) -> Graph:
    """The graph on raw inputs: an entry node (normalisation or identity) named like the original input, so
    every node reads it unchanged, then the original nodes with small convolutions made dense."""
    from verifier.ops.elementwise import Affine

    graph = network.graph
    if mean is None:
        entry = Affine(None, None, graph.input_shape)
    else:
        scale = 1.0 / std
        entry = Affine(scale, -mean * scale, graph.input_shape)
    nodes = [Node(graph.input_name, entry, [RAW_INPUT], graph.input_shape, "certify: input normalisation")]
    for node in graph.nodes:
        nodes.extend(_densified(graph, node))
    return Graph(RAW_INPUT, graph.input_shape, nodes, graph.output_name)


def _densified(graph: Graph, node: Node) -> list[Node]:
    """``node``, or for a small convolution: flatten, the dense layer of its Toeplitz matrix, reshape back."""
    from verifier.ops.conv import Conv
    from verifier.ops.linear import Linear
    from verifier.ops.shape import Reshape

    if not isinstance(node.op, Conv):
        return [node]
    shape_in = graph.shape(node.inputs[0])
    n_in, n_out = math.prod(shape_in), math.prod(node.shape)
    if n_in * n_out > DENSE_CONV_LIMIT:
        return [node]
    op = node.op
    with torch.no_grad():
        eye = torch.eye(n_in, dtype=torch.float64, device=op.weight.device).reshape(n_in, *shape_in)
        wide = copy.deepcopy(op).to(dtype=torch.float64)
        weight = wide.linear_part(eye).reshape(n_in, n_out).T.contiguous()
        bias = wide.forward(eye.new_zeros(1, *shape_in)).reshape(n_out)
    dtype = op.weight.dtype
    flat, dense = f"{node.name}/certify_flat", f"{node.name}/certify_dense"
    return [
        Node(flat, Reshape(shape_in, (n_in,)), list(node.inputs), (n_in,), node.source),
        Node(dense, Linear(weight.to(dtype), None if op.bias is None else bias.to(dtype)), [flat], (n_out,),
             node.source),
        Node(node.name, Reshape((n_out,), node.shape), [dense], node.shape, node.source),
    ]
