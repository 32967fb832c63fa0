"""Base classifiers: the models a smoothed classifier queries, behind one small interface.

Randomized smoothing only needs the base classifier's *hard label* on a batch of noisy inputs, so any
model we can run will do: a network in our graph IR, an ONNX file run by onnxruntime (also when it uses
an operator the bound engine cannot handle), or a ``torch.nn.Module``.

Shapes: ``input_shape`` is the shape of one input as the model sees it (for IR networks and ONNX files
the ONNX input shape at batch size 1, e.g. ``(1, 64)``); :meth:`BaseClassifier.classify` takes
``[B, *input_shape]`` and returns ``[B]`` class indices.

Devices: a classifier runs on its ``device`` (IR networks and torch modules on the device asked for,
onnxruntime on the CPU); the smoothed classifier draws its noise there, so on a GPU noise and forward pass
never leave it.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor

from verifier.device import DeviceLike, resolve_device
from verifier.errors import ModelLoadError, ShapeError, UnsupportedOperatorError
from verifier.network import Network
from verifier.threads import ensure_threads

BACKENDS = ("auto", "ir", "onnxruntime")


class BaseClassifier:
    """A classifier ``f``: inputs ``[B, *input_shape]`` -> scores ``[B, num_classes]`` -> labels ``[B]``."""

    input_shape: tuple[int, ...]
    num_classes: int
    dtype: torch.dtype = torch.float32
    #: where it runs: inputs are expected (and noise is drawn) on this device
    device: torch.device = torch.device("cpu")
    #: a short description for reports ("IR network models/x.onnx", "onnxruntime ...")
    description: str = ""

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    def scores(self, x: Tensor) -> Tensor:
        """The model's class scores (logits) for each input: ``[B, num_classes]``."""
        raise NotImplementedError

    def classify(self, x: Tensor) -> Tensor:
        """The hard label ``f(x) = argmax_c scores(x)_c`` of each input: ``[B]`` (int64)."""
        return self.scores(x).argmax(1)


class NetworkClassifier(BaseClassifier):
    """A network of the graph IR (what :func:`verifier.load_onnx` / :func:`verifier.from_torch` return)."""

    def __init__(self, network: Network):
        self.network = network
        self.input_shape = tuple(network.input_shape)
        self.num_classes = network.output_size
        self.dtype = network.dtype
        self.device = network.device
        self.description = f"IR network {network.source}" if network.source else "IR network"
        if self.device.type != "cpu":
            self.description += f" on {self.device}"

    def scores(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            y = self.network.graph.forward(x.reshape(x.shape[0], *self.input_shape))
        return y.reshape(x.shape[0], -1)


class TorchClassifier(BaseClassifier):
    """A ``torch.nn.Module`` called on ``[B, *input_shape]`` batches (in eval mode, without gradients)."""

    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...]):
        self.module = module.eval()
        self.input_shape = tuple(int(d) for d in input_shape)
        parameter = next(iter(module.parameters()), None)
        self.dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.inference_mode():
            out = module(torch.zeros(1, *self.input_shape, dtype=self.dtype, device=self.device))
        self.num_classes = int(out.reshape(1, -1).shape[1])
        self.description = f"torch module {type(module).__name__}"

    def scores(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.module(x).reshape(x.shape[0], -1)


class OnnxRuntimeClassifier(BaseClassifier):
    """An ONNX model run by onnxruntime (CPU, single-threaded unless told otherwise).

    A model exported with a fixed batch size of 1 is rewritten to take a symbolic batch dimension, so a
    whole batch of noisy inputs runs in one call; when that rewrite does not give a working model (a
    ``Reshape`` hard-coding the batch, say) inputs are run one at a time.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        try:
            model = onnx.load(str(self.path))
        except Exception as error:
            raise ModelLoadError(f"{self.path} is not a valid ONNX model: {type(error).__name__}: {error}") from None
        initializers = {init.name for init in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        if len(inputs) != 1 or len(model.graph.output) != 1:
            raise ModelLoadError(f"{self.path} must have exactly one input and one output tensor")
        dims = inputs[0].type.tensor_type.shape.dim
        # like the IR front end: the model is the function it computes at batch size 1
        self.input_shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
        self.dtype = torch.float64 if inputs[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE else torch.float32
        self._numpy_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        self.input_name = inputs[0].name
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self._single = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                        providers=["CPUExecutionProvider"])
            out = self._run_rows(np.zeros((1, *self.input_shape), dtype=self._numpy_dtype))
        except Exception as error:
            raise ModelLoadError(f"onnxruntime cannot run {self.path}: {type(error).__name__}: {error}") from None
        self.num_classes = int(out.shape[1])
        # a leading dimension of 1 (or a symbolic one) is a batch dimension we can try to widen
        self._batched_session = self._widened(model, options) if dims and self.input_shape[0] == 1 else None
        self.batched = self._batched_session is not None
        mode = "batched" if self.batched else "one input at a time"
        self.description = f"onnxruntime {self.path} ({mode})"

    def _widened(self, model: onnx.ModelProto, options):
        """A session of ``model`` with a symbolic batch dimension, if it computes every row of a batch
        exactly as the original model computes it alone (checked on random inputs); else ``None``."""
        import onnxruntime

        batched = onnx.ModelProto()
        batched.CopyFrom(model)
        for value in [*batched.graph.input, *batched.graph.output]:
            shape = value.type.tensor_type.shape
            if len(shape.dim) > 0:
                shape.dim[0].ClearField("dim_value")
                shape.dim[0].dim_param = "batch"
        probe = np.random.default_rng(0).standard_normal((3, *self.input_shape)).astype(self._numpy_dtype)
        try:
            session = onnxruntime.InferenceSession(batched.SerializeToString(), options,
                                                   providers=["CPUExecutionProvider"])
            out = session.run(None, {self.input_name: probe.reshape(3, *self.input_shape[1:])})[0]
        except Exception:
            return None
        if out.shape[0] != 3 or not np.allclose(out.reshape(3, -1), self._run_rows(probe), rtol=1e-5, atol=1e-6):
            return None
        return session

    def _run_rows(self, x: np.ndarray) -> np.ndarray:
        rows = [self._single.run(None, {self.input_name: row.reshape(self.input_shape)})[0] for row in x]
        return np.stack(rows).reshape(x.shape[0], -1)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._batched_session is None:
            return self._run_rows(x)
        feed = x.reshape(x.shape[0], *self.input_shape[1:])
        return self._batched_session.run(None, {self.input_name: feed})[0].reshape(x.shape[0], -1)

    def scores(self, x: Tensor) -> Tensor:
        x = x.detach().to(device="cpu", dtype=self.dtype).contiguous()
        return torch.from_numpy(self._run(x.numpy()))


def as_base_classifier(model, input_shape: tuple[int, ...] | None = None, backend: str = "auto",
                       device: DeviceLike = "cpu") -> BaseClassifier:
    """Wrap ``model`` as a :class:`BaseClassifier` running on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``; see :func:`verifier.device.resolve_device`).

    ``model`` may be a :class:`BaseClassifier` (taken as it is, on its own device), a
    :class:`~verifier.network.Network` or a ``torch.nn.Module`` (copied to ``device`` when it is elsewhere;
    a module needs ``input_shape``, the shape of one input without the batch dimension), or a path to an
    ONNX file. For a path, ``backend`` chooses how it runs: ``"ir"`` (our graph IR), ``"onnxruntime"`` (on the
    CPU whatever the device), or ``"auto"`` (see :func:`_classifier_for_file`).
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    ensure_threads()
    target = resolve_device(device)
    if isinstance(model, BaseClassifier):
        return model
    if isinstance(model, Network):
        return NetworkClassifier(model if model.device == target else copy.deepcopy(model).to(target))
    if isinstance(model, torch.nn.Module):
        if input_shape is None:
            raise ShapeError("a torch module needs input_shape (the shape of one input, without the batch dimension)")
        parameter = next(iter(model.parameters()), None)
        if parameter is not None and parameter.device != target:
            model = copy.deepcopy(model).to(target)
        return TorchClassifier(model, input_shape)
    if isinstance(model, (str, os.PathLike)):
        return _classifier_for_file(model, backend, target)
    raise ModelLoadError(
        f"cannot use a {type(model).__name__} as a base classifier; give a Network, an ONNX path, "
        "a torch.nn.Module or a BaseClassifier"
    )


def _classifier_for_file(path: str | os.PathLike, backend: str, device: torch.device) -> BaseClassifier:
    """The base classifier for an ONNX file. ``"auto"`` on the CPU takes onnxruntime when it runs the model in
    batches (the reference runtime, and the faster one on CPU: 1.2-2x on MLPs, more on convolutions),
    else our IR, else onnxruntime one input at a time (an operator the IR does not support); on a GPU it
    takes our IR on the GPU, else onnxruntime (on the CPU)."""
    if backend == "onnxruntime":
        return OnnxRuntimeClassifier(path)
    from verifier.api import load_onnx

    if backend == "ir":
        return NetworkClassifier(load_onnx(path).to(device))
    runtime: OnnxRuntimeClassifier | None = None
    if device.type == "cpu":
        try:
            runtime = OnnxRuntimeClassifier(path)
        except ModelLoadError:
            runtime = None
        if runtime is not None and runtime.batched:
            return runtime
    try:
        return NetworkClassifier(load_onnx(path).to(device))
    except UnsupportedOperatorError:
        if runtime is None and device.type != "cpu":
            return OnnxRuntimeClassifier(path)
        if runtime is None:
            raise
        return runtime
