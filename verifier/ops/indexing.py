"""Indexing and copying operators: Slice, Split, Gather (constant indices), Pad, Concat, Expand, Tile.

They only select, copy or insert constants, so every rule is exact:

* IBP applies the operator to both bounds (each output element is one input element or a constant);
* CROWN sends each output coefficient back to the input element it was copied from, summing where
  one element was copied several times (``index_add``; a broadcast sums over the copies); coefficients
  of inserted constants (Pad's value, Concat's constant parts) go into the bias.

Slice, Split, Gather, Tile and the non-constant Pad modes (reflect, edge, wrap) are all
:class:`AxisSelect`: a list of index vectors, one per axis, applied with ``index_select``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.base import Interval, Operator, unbroadcast
from verifier.ops.bilinear import align
from verifier.ops.registry import Outputs, SourceNode, normalize_axis, onnx_op, torch_op
from verifier.ops.shape import Reshape


class AxisSelect(Operator):
    """``y = x.index_select(a_1, i_1).index_select(a_2, i_2)...`` with constant index vectors."""

    op_type = "AxisSelect"
    is_affine = True

    def __init__(self, selections: Sequence[tuple[int, Tensor]], input_shape: Sequence[int]):
        self.selections = [(int(axis), index.long()) for axis, index in selections]
        self.shapes = [tuple(input_shape)]
        for axis, index in self.selections:
            shape = list(self.shapes[-1])
            shape[axis] = index.numel()
            self.shapes.append(tuple(shape))

    def forward(self, x: Tensor) -> Tensor:
        for axis, index in self.selections:
            x = x.index_select(axis + 1, index)
        return x

    linear_part = abs_linear_part = forward

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        for (axis, index), shape in zip(reversed(self.selections), reversed(self.shapes[:-1])):
            A = A.new_zeros(*A.shape[:2], *shape).index_add_(axis + 2, index, A)
        return [A], None

    def constants(self) -> dict[str, Tensor]:
        return {}

    def describe(self) -> str:
        return f"AxisSelect {self.shapes[0]}->{self.shapes[-1]}"


class ConstantPad(Operator):
    """Pad with a constant (ONNX Pad ``mode=constant``); ``pads`` is ``(begin, end)`` per per-sample axis,
    negative values crop."""

    op_type = "Pad"
    is_affine = True

    def __init__(self, pads: Sequence[tuple[int, int]], value: float):
        self.pads = [tuple(int(p) for p in pair) for pair in pads]
        self.value = float(value)
        self._torch_pads = [p for pair in reversed(self.pads) for p in pair]

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self._torch_pads, value=self.value)

    def linear_part(self, x: Tensor) -> Tensor:
        return F.pad(x, self._torch_pads)

    abs_linear_part = linear_part

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        A_in = F.pad(A, [-p for p in self._torch_pads])
        bias = None
        if self.value != 0:
            bias = self.value * (A.flatten(2).sum(-1) - A_in.flatten(2).sum(-1))
        return [A_in], bias


class Concat(Operator):
    """Concatenation along ``axis`` of variable inputs and constant parts (``parts[i]`` is ``None`` for the
    next variable input, or a constant tensor)."""

    op_type = "Concat"
    is_affine = True

    def __init__(self, axis: int, parts: Sequence[Tensor | None], sizes: Sequence[int]):
        self.axis = axis
        self.parts = list(parts)
        self.sizes = list(sizes)

    def _join(self, variables: Sequence[Tensor], constant_scale: float = 1.0) -> Tensor:
        pieces, rest = [], iter(variables)
        batch = variables[0].shape[0]
        for part in self.parts:
            if part is None:
                pieces.append(next(rest))
            else:
                pieces.append((constant_scale * part.to(variables[0].dtype)).expand(batch, *part.shape))
        return torch.cat(pieces, self.axis + 1)

    def forward(self, *xs: Tensor) -> Tensor:
        return self._join(xs)

    def linear_part(self, *xs: Tensor) -> Tensor:
        """The concatenation with the constant parts replaced by zeros."""
        return self._join(xs, constant_scale=0.0)

    abs_linear_part = linear_part

    def interval(self, *bounds: Interval) -> Interval:
        return self._join([b[0] for b in bounds]), self._join([b[1] for b in bounds])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        A_in, bias = [], None
        for part, piece in zip(self.parts, A.split(self.sizes, self.axis + 2)):
            if part is None:
                A_in.append(piece)
            else:
                term = (piece * part.to(A.dtype)).flatten(2).sum(-1)
                bias = term if bias is None else bias + term
        return A_in, bias

    def constants(self) -> dict[str, Tensor]:
        return {}


class Expand(Operator):
    """Numpy-style broadcast of ``x`` to a larger shape (ONNX Expand); CROWN sums over the copies."""

    op_type = "Expand"
    is_affine = True

    def __init__(self, input_shape: Sequence[int], output_shape: Sequence[int]):
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)

    def forward(self, x: Tensor) -> Tensor:
        return align(x, len(self.output_shape)).expand(x.shape[0], *self.output_shape)

    def linear_part(self, x: Tensor) -> Tensor:
        return self.forward(x)

    abs_linear_part = linear_part

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        return [unbroadcast(A, self.input_shape)], None


class Tile(Operator):
    """``x`` repeated ``repeats[a]`` times along each axis (ONNX Tile, ``Tensor.repeat``)."""

    op_type = "Tile"
    is_affine = True

    def __init__(self, repeats: Sequence[int], input_shape: Sequence[int]):
        self.repeats = [int(r) for r in repeats]
        self.input_shape = tuple(input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.repeat(1, *self.repeats)

    linear_part = abs_linear_part = forward

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        split = [n for r, d in zip(self.repeats, self.input_shape) for n in (r, d)]
        A = A.reshape(*A.shape[:2], *split)
        return [A.sum(dim=tuple(2 + 2 * i for i in range(len(self.repeats))))], None


# -- converters -------------------------------------------------------------------------------------------
def _ints(node: SourceNode, index: int, attr: str) -> list[int] | None:
    """A constant integer list given as input ``index`` (newer opsets) or attribute ``attr`` (older)."""
    if node.has_input(index):
        value = node.const(index)
        if value is None:
            raise node.unsupported(f"input {index} must be a constant")
        return [int(v) for v in np.asarray(value).reshape(-1)]
    value = node.attr(attr)
    return None if value is None else [int(v) for v in value]


def slice_selection(node: SourceNode, shape, starts, ends, axes, steps) -> AxisSelect | str:
    selections = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = normalize_axis(axis, len(shape))
        if step == 0:
            raise node.unsupported("step 0")
        index = list(range(shape[axis]))[slice(start, end, step)]
        if not index:
            raise node.unsupported(f"the slice of axis {axis} is empty")
        if index != list(range(shape[axis])):
            selections.append((axis, torch.tensor(index)))
    return AxisSelect(selections, shape) if selections else node.inputs[0]


@onnx_op("Slice")
def _onnx_slice(node: SourceNode) -> AxisSelect | str:
    shape = node.shape(0)
    starts, ends = _ints(node, 1, "starts"), _ints(node, 2, "ends")
    axes = _ints(node, 3, "axes") or list(range(len(starts)))
    steps = _ints(node, 4, "steps") or [1] * len(starts)
    return slice_selection(node, shape, starts, ends, axes, steps)


@onnx_op("Split")
def _onnx_split(node: SourceNode) -> Outputs:
    shape = node.shape(0)
    axis = normalize_axis(node.attr("axis", 0), len(shape))
    sizes = _ints(node, 1, "split")
    if sizes is None:
        parts = node.attr("num_outputs", node.num_outputs)
        chunk = -(-shape[axis] // parts)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(parts)]
    if sum(sizes) != shape[axis] or min(sizes) <= 0:
        raise node.unsupported(f"split sizes {sizes} do not fit axis {axis} of shape {shape}")
    ops, start = [], 0
    for size in sizes:
        ops.append(AxisSelect([(axis, torch.arange(start, start + size))], shape))
        start += size
    return Outputs(ops)


@onnx_op("Gather")
def _onnx_gather(node: SourceNode) -> Operator | list[Operator]:
    if not node.is_const(1) or node.is_const(0):
        raise node.unsupported("only Gather(variable data, constant indices) is supported")
    shape = node.shape(0)
    axis = normalize_axis(node.attr("axis", 0), len(shape))
    indices = np.asarray(node.const(1)).astype(np.int64)
    if np.any(indices < -shape[axis]) or np.any(indices >= shape[axis]):
        raise node.unsupported(f"indices out of range for axis {axis} of size {shape[axis]}")
    indices = np.where(indices < 0, indices + shape[axis], indices)
    select = AxisSelect([(axis, torch.from_numpy(indices.reshape(-1)))], shape)
    out_shape = (*shape[:axis], *indices.shape, *shape[axis + 1 :])
    if out_shape == select.shapes[-1]:
        return select
    return [select, Reshape(select.shapes[-1], out_shape)]


def _pad_index(size: int, begin: int, end: int, mode: str) -> Tensor:
    positions = np.arange(-begin, size + end)
    if mode == "edge":
        positions = np.clip(positions, 0, size - 1)
    elif mode == "wrap":
        positions = positions % size
    else:  # reflect (without repeating the edge): period 2 (size - 1)
        period = 2 * (size - 1)
        positions = np.mod(positions, period)
        positions = np.where(positions >= size, period - positions, positions)
    return torch.from_numpy(positions.astype(np.int64))


@onnx_op("Pad")
def _onnx_pad(node: SourceNode) -> Operator | str:
    shape = node.shape(0)
    mode = node.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    flat = _ints(node, 1, "pads")
    rank = len(shape)
    axes = _ints(node, 3, "axes") if node.opset >= 18 else None
    axes = [normalize_axis(a, rank) for a in axes] if axes else list(range(rank))
    pads = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        pads[axis] = (flat[i], flat[i + len(axes)])
    if all(p == (0, 0) for p in pads):
        return node.inputs[0]
    if mode == "constant":
        value = node.const(2) if node.has_input(2) else node.attr("value", 0.0)
        return ConstantPad(pads, float(np.asarray(0.0 if value is None else value).reshape(-1)[0]))
    if mode not in ("reflect", "edge", "wrap"):
        raise node.unsupported(f"mode {mode!r}")
    if mode == "reflect" and any(max(b, e) >= s for (b, e), s in zip(pads, shape) if (b, e) != (0, 0)):
        raise node.unsupported("reflect padding as large as the axis")
    selections = [(a, _pad_index(shape[a], b, e, mode)) for a, (b, e) in enumerate(pads) if (b, e) != (0, 0)]
    return AxisSelect(selections, shape)


@onnx_op("Concat")
def _onnx_concat(node: SourceNode) -> Operator:
    shapes = [np.shape(node.constants[n]) if n in node.constants else node.shapes[n] for n in node.inputs if n]
    rank = len(shapes[0])
    axis = normalize_axis(node.attr("axis"), rank)
    parts = [node.tensor(node.constants[n]) if n in node.constants else None for n in node.inputs if n]
    return Concat(axis, parts, [s[axis] for s in shapes])


@onnx_op("Expand")
def _onnx_expand(node: SourceNode) -> Operator | str:
    target = node.const(1)
    if target is None or node.is_const(0):
        raise node.unsupported("only Expand(variable, constant shape) is supported")
    shape = node.shape(0)
    out = tuple(int(d) for d in np.broadcast_shapes(shape, tuple(np.asarray(target).reshape(-1))))
    return node.inputs[0] if out == tuple(shape) else Expand(shape, out)


@onnx_op("Tile")
def _onnx_tile(node: SourceNode) -> Operator | str:
    repeats = node.const(1)
    if repeats is None or node.is_const(0):
        raise node.unsupported("only Tile(variable, constant repeats) is supported")
    repeats = [int(r) for r in np.asarray(repeats).reshape(-1)]
    if len(repeats) != len(node.shape(0)) or min(repeats) < 1:
        raise node.unsupported(f"repeats {repeats} do not fit shape {node.shape(0)}")
    return node.inputs[0] if all(r == 1 for r in repeats) else Tile(repeats, node.shape(0))


# -- torch ------------------------------------------------------------------------------------------------
@torch_op(torch.cat, torch.concat, "cat")
def _torch_cat(node: SourceNode) -> Operator:
    args, kwargs = node.attr("args", []), node.attr("kwargs", {})
    dim = args[0] if args else kwargs.get("dim", 0)
    node.attrs = {"axis": dim}
    return _onnx_concat(node)


@torch_op(F.pad)
def _torch_pad(node: SourceNode) -> Operator | str:
    args, kwargs = node.attr("args", []), node.attr("kwargs", {})
    pad = list(args[0] if args else kwargs["pad"])
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "constant")
    value = args[2] if len(args) > 2 else kwargs.get("value", 0.0)
    shape = node.shape(0)
    pads = [(0, 0)] * len(shape)
    for i in range(len(pad) // 2):
        pads[len(shape) - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    if mode not in modes:
        raise node.unsupported(f"mode {mode!r}")
    flat = [b for b, _ in pads] + [e for _, e in pads]
    node.attrs = {"mode": modes[mode], "pads": flat, "value": 0.0 if value is None else value}
    return _onnx_pad(node)


@torch_op(operator.getitem)
def _torch_getitem(node: SourceNode) -> Operator | list[Operator] | str:
    """Basic indexing ``x[:, 1:3, ::2, 0]`` with slices and integers (no tensors, no ``None``)."""
    index = node.attr("args", [()])[0]
    index = index if isinstance(index, tuple) else (index,)
    shape = node.shape(0)
    if any(i is Ellipsis for i in index):
        position = index.index(Ellipsis)
        index = index[:position] + (slice(None),) * (len(shape) - len(index) + 1) + index[position + 1 :]
    if len(index) > len(shape) or not all(isinstance(i, (slice, int)) for i in index):
        raise node.unsupported(f"indexing with {index!r}")
    starts, ends, steps, dropped = [], [], [], []
    for axis, item in enumerate(index):
        if isinstance(item, int):
            item = slice(item, item + 1 if item != -1 else None, 1)
            dropped.append(axis)
        starts.append(item.start if item.start is not None else (0 if (item.step or 1) > 0 else -1))
        ends.append(item.stop if item.stop is not None else (2**62 if (item.step or 1) > 0 else -(2**62)))
        steps.append(item.step or 1)
    select = slice_selection(node, shape, starts, ends, list(range(len(starts))), steps)
    if not dropped:
        return select
    middle = select.shapes[-1] if isinstance(select, AxisSelect) else shape
    out = tuple(d for a, d in enumerate(middle) if a not in dropped)
    reshape = Reshape(middle, out)
    return [select, reshape] if isinstance(select, AxisSelect) else reshape


@torch_op("expand")
def _torch_expand(node: SourceNode) -> Operator | str:
    sizes = node.attr("args", [])
    sizes = list(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else list(sizes)
    shape = node.shape(0)
    full = [1] * (len(sizes) - len(shape)) + list(shape)
    out = tuple(f if s == -1 else s for s, f in zip(sizes, full))
    return node.inputs[0] if out == tuple(shape) else Expand(shape, out)


@torch_op("repeat")
def _torch_repeat(node: SourceNode) -> Operator | str:
    reps = node.attr("args", [])
    reps = list(reps[0]) if len(reps) == 1 and isinstance(reps[0], (tuple, list)) else list(reps)
    if len(reps) != len(node.shape(0)):
        raise node.unsupported("repeat must give one count per axis")
    return node.inputs[0] if all(r == 1 for r in reps) else Tile(reps, node.shape(0))

