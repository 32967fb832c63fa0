"""alpha-CROWN: optimised relaxation slopes (Xu et al. 2021, "Fast and Complete").

Any lower line ``alpha * x`` with ``alpha in [0, 1]`` is a sound relaxation of an unstable ReLU, so the
CROWN bound of each specification row is a valid bound for every choice of the slopes, and the slopes can
be optimised (projected gradient ascent with Adam) per domain, per row and per neuron to tighten it.
S-shaped activations (Sigmoid, Tanh, Erf) get both their lines optimised the same way: their intercepts
are exact for any slope (:meth:`verifier.ops.activation.SShaped.relax_with_slopes`), so every slope is
sound and the projection onto the derivative's range on the box only keeps the search where it helps.
:func:`optimize_slopes` keeps the pre-activation bounds fixed and optimises the final bound's slopes;
:func:`optimize_all_slopes` optimises the intermediate bounds' slopes too. The best bound seen over the
iterations is kept row by row (each iterate is sound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bounds import rounding
from verifier.bounds.crown import backward_lower
from verifier.cancel import checkpoint
from verifier.ir import Graph, Node
from verifier.kernels import relu_backward
from verifier.ops.activation import Relu, SShaped
from verifier.ops.base import Interval
from verifier.primitives import relaxed_backward, relu_default_lower_slope


def has_slopes(node: Node) -> bool:
    """Whether alpha-CROWN optimises this node's relaxation (ReLU and S-shaped activations)."""
    return isinstance(node.op, (Relu, SShaped))


def default_slopes(node: Node, lower: Tensor, upper: Tensor, rows: int) -> Tensor:
    """CROWN's slopes for ``node`` on pre-activation bounds ``[B, *shape]``, one copy per specification row:
    the ReLU lower slope ``[B, rows, *shape]``, or the S-shaped lower and upper slopes ``[B, rows, 2, *shape]``."""
    if isinstance(node.op, Relu):
        value = relu_default_lower_slope(lower, upper)
    else:
        relaxation = node.op.relax(lower, upper)
        value = torch.stack([relaxation.lower_slope, relaxation.upper_slope], 1)
    return value.unsqueeze(1).expand(-1, rows, *value.shape[1:]).clone()


def slope_step(node: Node, A: Tensor, bounds: dict[str, Interval], slope: Tensor,
               ranges: dict | None = None, key=None) -> tuple[list[Tensor], Tensor | None]:
    """The CROWN backward step through ``node`` with the given slopes (see :func:`default_slopes`); for
    S-shaped nodes the derivative's range on the box is recorded in ``ranges[key]`` for the projection."""
    lower, upper = bounds[node.inputs[0]]
    if isinstance(node.op, Relu):
        A_in, bias = relu_backward(A, lower, upper, slope)
        return [A_in], bias
    if ranges is not None:
        low, high = node.op.slope_range(lower.detach(), upper.detach())
        ranges[key] = (low.unsqueeze(1), high.unsqueeze(1))
    relaxation = node.op.relax_with_slopes(lower, upper, slope[:, :, 0], slope[:, :, 1])
    A_in, bias = relaxed_backward(A, relaxation)
    return [A_in], bias


def project_slopes(slopes: dict, ranges: dict) -> None:
    """In place: ReLU slopes into ``[0, 1]``; S-shaped slopes (the keys of ``ranges``) into the derivative's
    range last seen (left as they are before the first backward pass records it)."""
    with torch.no_grad():
        for key, value in slopes.items():
            if key not in ranges:
                value.clamp_(0, 1)
            elif ranges[key] is not None:
                low, high = ranges[key]
                for side in (0, 1):
                    part = value[:, :, side]
                    part.copy_(torch.maximum(torch.minimum(part, high), low))


#: S-shaped slopes live in the derivative's range (at most 1/4 for a sigmoid, against [0, 1] for a ReLU) and
#: move the bound far more per unit than ReLU slopes: Adam steps of the ReLU size overshoot. Measured on
#: ERAN's sigmoid network: learning rate 0.25 left a margin at -2.42, 0.01 (this scale) at -1.50.
S_SHAPED_LR_SCALE = 0.04


def slope_groups(slopes: dict, ranges: dict, lr: float) -> list[dict]:
    """Adam parameter groups of a slope set: ReLU slopes at ``lr``, S-shaped ones (the keys of ``ranges``) at
    ``lr * S_SHAPED_LR_SCALE``."""
    relu = [v for k, v in slopes.items() if k not in ranges]
    smooth = [v for k, v in slopes.items() if k in ranges]
    groups = [{"params": relu, "lr": lr}] if relu else []
    return groups + ([{"params": smooth, "lr": lr * S_SHAPED_LR_SCALE}] if smooth else [])


class Adam:
    """Adam (Kingma and Ba 2015) with ``torch.optim.Adam``'s defaults (betas 0.9/0.999, eps 1e-8, bias
    correction) over parameter groups ``[{"params": [...], "lr": x}, ...]``, the same steps bit for bit.

    Written out because ``torch.optim`` imports ``torch._dynamo`` on an optimiser's first use (2 s, in the
    middle of a search); the step is the fused kernel (``torch._fused_adam_``, one kernel per step: on a BaB
    batch of 256 domains x 9 rows x 256 neurons x 4 tensors 1.3 ms against 5.3 ms for a per-tensor loop) where
    this torch build has one for the device and dtype, else the same arithmetic with ``torch._foreach_*``."""

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.groups = [(list(group["params"]), float(group["lr"])) for group in groups]
        self.betas, self.eps = betas, eps
        self.state: dict[int, tuple[Tensor, Tensor, Tensor]] = {}   # id(param) -> (step, m, v)

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for params, lr in self.groups:
            by_kind: dict[tuple, list[Tensor]] = {}
            for p in params:
                if p.grad is not None:
                    by_kind.setdefault((p.device, p.dtype), []).append(p)
            for (device, dtype), live in by_kind.items():
                states = [self._state(p) for p in live]
                steps, avgs, squares = ([s[i] for s in states] for i in range(3))
                grads = [p.grad for p in live]
                torch._foreach_add_(steps, 1)
                if _fused_adam_runs(device, dtype):
                    torch._fused_adam_(live, grads, avgs, squares, [], steps, amsgrad=False, lr=lr, beta1=beta1,
                                       beta2=beta2, weight_decay=0.0, eps=self.eps, maximize=False)
                    continue
                for p, grad, step, avg, square in zip(live, grads, steps, avgs, squares):
                    count = float(step)
                    avg.lerp_(grad, 1 - beta1)
                    square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denominator = (square.sqrt() / math.sqrt(1 - beta2 ** count)).add_(self.eps)
                    p.addcdiv_(avg, denominator, value=-lr / (1 - beta1 ** count))

    def _state(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        state = self.state.get(id(p))
        if state is None:
            step = torch.zeros((), dtype=torch.float32, device=p.device)
            state = self.state[id(p)] = (step, torch.zeros_like(p), torch.zeros_like(p))
        return state


def _fused_adam_runs(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``torch._fused_adam_`` has a kernel for this device and dtype (tried once per pair)."""
    key = (device.type, dtype)
    if key not in _FUSED:
        try:
            p = torch.zeros(1, device=device, dtype=dtype)
            state = [torch.zeros((), dtype=torch.float32, device=device) + 1]
            torch._fused_adam_([p], [p.clone()], [p.clone()], [p.clone()], [], state, amsgrad=False, lr=0.1,
                               beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, maximize=False)
            _FUSED[key] = True
        except (RuntimeError, AttributeError, TypeError, NotImplementedError):
            _FUSED[key] = False
    return _FUSED[key]


_FUSED: dict[tuple, bool] = {}


def adam(groups: list[dict]) -> Adam:
    """:class:`Adam` over parameter groups (the optimiser of every alpha/beta loop)."""
    return Adam(groups)


def keep_best(value: Tensor, best: Tensor | None) -> Tensor:
    """The row-wise best of the bounds seen so far and ``value`` (each iterate is sound); a NaN bound proves
    nothing and counts as ``-inf``."""
    current = value.detach().nan_to_num(nan=-torch.inf)
    return current if best is None else torch.maximum(best, current)


def shortfall_loss(value: Tensor, best: Tensor) -> Tensor:
    """How far the bounds ``value`` are below zero, summed over the rows not yet proved (``best > 0`` rows need
    no more work): the quantity the slope and multiplier optimisers minimise."""
    return -value.clamp(max=0).masked_fill(best > 0, 0).sum()


def stop_early(best: Tensor, loss: Tensor, plateau: Plateau | None = None,
               shortfalls: list[float] | None = None) -> bool:
    """Whether an optimisation loop is done: every row proved (``best > 0``) or the loss is not finite; with
    ``plateau``, also once the best bound's shortfall, appended to ``shortfalls`` (one per iteration), has
    stopped improving (:class:`Plateau`). One host sync for all the tests (on a GPU each costs a round trip)."""
    if plateau is None:
        proved, finite = torch.stack([(best > 0).all(), torch.isfinite(loss)]).tolist()
        return proved or not finite
    proved, finite, shortfall = torch.stack([(best > 0).all().to(loss.dtype), torch.isfinite(loss).to(loss.dtype),
                                             -best.clamp(max=0).sum().to(loss.dtype)]).tolist()
    shortfalls.append(shortfall)
    return bool(proved) or not finite or plateau.reached(shortfalls)


@dataclass
class AlphaOptions:
    """``iterations`` of Adam with learning rate ``lr``; stops early when every row is positive (proved)."""

    iterations: int = 20
    lr: float = 0.25


class ReluSlopes:
    """Optimisable slopes of the final bound for each ReLU (``[B, K, *shape]``) and S-shaped activation
    (``[B, K, 2, *shape]``, lower and upper line) of a graph, used as a CROWN backward hook."""

    def __init__(self, graph: Graph, bounds: dict[str, Interval], rows: int, initial: ReluSlopes | None = None):
        self.start = graph.output_name
        self.slopes: dict[str, Tensor] = {}
        self.ranges: dict[str, tuple[Tensor, Tensor] | None] = {}
        for node in graph.nodes:
            if not has_slopes(node):
                continue
            lower, upper = bounds[node.inputs[0]]
            if isinstance(node.op, SShaped):
                self.ranges[node.name] = None
            if initial is not None and node.name in initial.slopes:
                value = initial.slopes[node.name].detach()
                value = value.expand(lower.shape[0], rows, *value.shape[2:]).clone()
            else:
                value = default_slopes(node, lower, upper, rows)
            self.slopes[node.name] = value.requires_grad_(True)

    @classmethod
    def from_tensors(cls, graph: Graph, slopes: dict[str, Tensor]) -> ReluSlopes:
        """Final-bound slopes of ``graph`` given directly (``[B, K, *shape]`` per ReLU node,
        ``[B, K, 2, *shape]`` per S-shaped one), made optimisable."""
        self = cls.__new__(cls)
        self.start = graph.output_name
        self.slopes = {k: v.detach().clone().requires_grad_(True) for k, v in slopes.items()}
        self.ranges = {n.name: None for n in graph.nodes if isinstance(n.op, SShaped) and n.name in slopes}
        return self

    def parameters(self) -> list[Tensor]:
        return list(self.slopes.values())

    def clamp_(self) -> None:
        project_slopes(self.slopes, self.ranges)

    def __call__(self, node: Node, start: str, A: Tensor, bounds: dict[str, Interval]):
        if start != self.start or node.name not in self.slopes:
            return None
        return slope_step(node, A, bounds, self.slopes[node.name], self.ranges, node.name)


def optimize_slopes(
    graph: Graph,
    spec: Tensor,
    offset: Tensor,
    bounds: dict[str, Interval],
    options: AlphaOptions | None = None,
    initial: ReluSlopes | None = None,
    hook=None,
) -> tuple[Tensor, ReluSlopes]:
    """alpha-CROWN lower bounds of ``spec . y - offset`` (``spec`` ``[b, K, *out_shape]``, ``offset`` ``[K]``).

    Returns the best bounds ``[B, K]`` and the slopes (reusable as ``initial`` for sub-domains).
    ``hook`` (optional) is consulted first for every node (e.g. split constraints in beta-CROWN).
    """
    options = options or AlphaOptions()
    slopes = ReluSlopes(graph, bounds, spec.shape[1], initial)
    step = slopes if hook is None else _chain(hook, slopes)
    optimizer = adam(slope_groups(slopes.slopes, slopes.ranges, options.lr)) if slopes.slopes else None
    best = None
    for _ in range(max(1, options.iterations)):
        checkpoint()
        with torch.enable_grad():
            value = backward_lower(graph, graph.output_name, spec, bounds, step) - offset
            best = keep_best(value, best)
            if optimizer is None:
                break
            loss = shortfall_loss(value, best)
            if stop_early(best, loss):
                break
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        slopes.clamp_()
    return best, slopes


def _chain(first, second):
    def hook(node, start, A, bounds):
        result = first(node, start, A, bounds)
        return result if result is not None else second(node, start, A, bounds)

    return hook


class IntermediateSlopes:
    """Optimisable slopes (as in :class:`ReluSlopes`) for every (bounded tensor, upstream activation) pair:
    the slopes used when CROWN bounds the pre-activation tensor ``start`` (rows: its refined neurons, lower
    then upper) and when it bounds the final specification."""

    def __init__(self, graph: Graph, bounds: dict[str, Interval], rows: dict[str, int]):
        self.slopes: dict[tuple[str, str], Tensor] = {}
        self.ranges: dict[tuple[str, str], tuple[Tensor, Tensor] | None] = {}
        for start, count in rows.items():
            # a backward pass from ``start`` goes through every activation up to and including ``start``
            for node in graph.nodes[: graph.position(start) + 1]:
                if has_slopes(node):
                    lower, upper = bounds[node.inputs[0]]
                    key = (start, node.name)
                    self.slopes[key] = default_slopes(node, lower, upper, count).requires_grad_(True)
                    if isinstance(node.op, SShaped):
                        self.ranges[key] = None

    def parameters(self) -> list[Tensor]:
        return list(self.slopes.values())

    def clamp_(self) -> None:
        project_slopes(self.slopes, self.ranges)

    def numel(self) -> int:
        return sum(v.numel() for v in self.slopes.values())

    def __call__(self, node: Node, start: str, A: Tensor, bounds: dict[str, Interval]):
        key = (start, node.name)
        slope = self.slopes.get(key)
        if slope is None:
            return None
        return slope_step(node, A, bounds, slope, self.ranges, key)


@dataclass
class Plateau:
    """When an optimisation has stopped paying: after at least ``min_iterations``, the best bound's total
    shortfall (how far the unproved rows are below zero) improved by less than ``relative`` of itself over
    the last ``window`` iterations. Full alpha-CROWN at the ReLU-split root on oval21 cifar_base_kw img 3568:
    shortfall 3.297 after 10 iterations, 3.216 after 20, 3.202 after 50 (0.4 % for the last 30, 2.4 s of
    4.0 s); on mnist_fc 256x6 prop 7 (eps 0.03) 0.517 after 20 and 0.444 after 50, two more rows proved."""

    min_iterations: int = 20
    window: int = 10
    relative: float = 0.01

    def reached(self, shortfalls: list[float]) -> bool:
        """Whether the optimisation should stop, given the shortfall after each iteration so far."""
        if len(shortfalls) < max(self.min_iterations, self.window + 1):
            return False
        before, now = shortfalls[-1 - self.window], shortfalls[-1]
        return before - now <= self.relative * now


def optimize_all_slopes(
    graph: Graph,
    lower: Tensor,
    upper: Tensor,
    spec: Tensor,
    offset: Tensor,
    iterations: int = 20,
    lr: float = 0.1,
    max_parameters: int = 20_000_000,
    width_weight: float = 1.0,
    keep: dict | None = None,
    plateau: Plateau | None = None,
) -> tuple[Tensor, dict[str, Interval], ReluSlopes] | None:
    """Full alpha-CROWN: slopes optimised for every intermediate bound and the final one at once.

    Each iteration recomputes the pre-activation bounds with the current slopes (intersected with the best
    bounds so far: every iterate is sound) and the bound of ``spec . y - offset``. The loss is the final
    bound's shortfall plus ``width_weight`` times the summed widths of the refined pre-activation bounds:
    each intermediate neuron's slopes are then pushed to tighten its own bound (as if it were optimised
    alone), not only through what it does to the final bound, where the gradient is weak after a few layers
    (measured on ERAN's 6x200 sigmoid network: margins -5.1 and -1.4 without the widths, +1.4 and +2.4 with
    them). Returns the best final bounds ``[B, K]``, the tightest pre-activation bounds and the final slopes,
    or ``None`` when the slopes would need more than ``max_parameters`` numbers. With ``keep`` (a dict), the
    last iterate's slopes of every bound go into ``keep["slopes"]`` and the refined neurons into
    ``keep["index"]``, for :func:`replay_all_slopes`. With ``plateau``, the optimisation also stops once the
    final bound's shortfall has stopped improving (:class:`Plateau`).
    """
    from verifier.bounds.crown import CrownOptions, _refined_neurons, compute_intermediate_bounds, pre_activation_names

    with torch.no_grad():
        best_bounds = compute_intermediate_bounds(graph, lower, upper, CrownOptions())
    names = [n for n in pre_activation_names(graph) if n != graph.input_name]
    index = {}
    for name in names:
        wanted = _refined_neurons(graph, name, *best_bounds[name]).any(0)
        index[name] = wanted.nonzero().flatten()
    rows = {name: 2 * len(ix) for name, ix in index.items() if len(ix)}
    rows[graph.output_name] = spec.shape[1]
    slopes = IntermediateSlopes(graph, best_bounds, rows)
    if slopes.numel() > max_parameters or not slopes.slopes:
        return None
    optimizer = adam(slope_groups(slopes.slopes, slopes.ranges, lr))
    best = None
    shortfalls: list[float] = []
    for _ in range(max(1, iterations)):
        checkpoint()
        with torch.enable_grad():
            value, bounds, widths = _all_slopes_pass(graph, lower, upper, spec, offset, slopes, index, best_bounds)
            best = keep_best(value, best)
            best_bounds = {k: (v[0].detach(), v[1].detach()) for k, v in bounds.items()}
            loss = shortfall_loss(value, best) + width_weight * widths
            if stop_early(best, loss, plateau, shortfalls):
                break
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        slopes.clamp_()
    if keep is not None:
        keep["slopes"] = {key: value.detach() for key, value in slopes.slopes.items()}
        keep["index"] = index
    return best, best_bounds, _final_slopes(graph, slopes.slopes)


def replay_all_slopes(graph: Graph, lower: Tensor, upper: Tensor, spec: Tensor, offset: Tensor,
                      kept: dict) -> tuple[Tensor, dict[str, Interval], ReluSlopes]:
    """One full alpha-CROWN pass with given slopes (``kept``, as :func:`optimize_all_slopes` keeps them, e.g.
    optimised in float32) in the type of ``lower``: CROWN's pre-activation bounds, each refined neuron's
    bound recomputed with its slopes and intersected with CROWN's, and the final bound. Any slopes in their
    range give sound bounds, so a float64 replay of float32-optimised slopes is a float64 computation, at the
    cost of about three bound passes instead of an optimisation. Returns as :func:`optimize_all_slopes`."""
    from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds

    dtype = lower.dtype
    with torch.no_grad():
        crown = compute_intermediate_bounds(graph, lower, upper, CrownOptions())
        slopes = IntermediateSlopes.__new__(IntermediateSlopes)
        slopes.slopes = {key: value.to(dtype) for key, value in kept["slopes"].items()}
        slopes.ranges = {}   # (the projection's ranges: nothing is projected here)
        value, bounds, _ = _all_slopes_pass(graph, lower, upper, spec, offset, slopes, kept["index"], crown)
    return value, bounds, _final_slopes(graph, slopes.slopes)


def _final_slopes(graph: Graph, slopes: dict) -> ReluSlopes:
    return ReluSlopes.from_tensors(graph, {relu: value for (start, relu), value in slopes.items()
                                           if start == graph.output_name})


def _all_slopes_pass(graph: Graph, lower: Tensor, upper: Tensor, spec: Tensor, offset: Tensor,
                     slopes: IntermediateSlopes, index: dict[str, Tensor], known: dict[str, Interval]
                     ) -> tuple[Tensor, dict[str, Interval], Tensor]:
    """One pass of full alpha-CROWN: every pre-activation bound (interval, intersected with ``known``, its
    refined neurons ``index`` by CROWN with ``slopes``), the final bound of ``spec . y - offset`` and the summed
    widths of the refined bounds."""
    from verifier.bounds.crown import unit_rows

    bounds: dict[str, Interval] = {graph.input_name: (lower, upper)}
    widths = lower.new_zeros(())
    for node in graph.nodes:
        interval = node.op.interval(*(bounds[i] for i in node.inputs))
        node_lower, node_upper = rounding.widen_interval(node.name, *interval)
        known_lower, known_upper = known[node.name]
        node_lower, node_upper = torch.maximum(node_lower, known_lower), torch.minimum(node_upper, known_upper)
        ix = index.get(node.name)
        if ix is not None and len(ix):
            flat_lower = node_lower.reshape(lower.shape[0], -1)
            flat_upper = node_upper.reshape(lower.shape[0], -1)
            A = unit_rows(ix, flat_lower.shape[1], flat_lower).reshape(1, len(ix), *node.shape)
            both = backward_lower(graph, node.name, torch.cat([A, -A], 1), bounds, slopes)
            width = -both[:, len(ix):] - both[:, : len(ix)]
            widths = widths + width[torch.isfinite(width)].sum()
            new_lower = torch.maximum(flat_lower[:, ix], both[:, : len(ix)])
            new_upper = torch.minimum(flat_upper[:, ix], -both[:, len(ix):])
            flat_lower = flat_lower.index_copy(1, ix, new_lower)
            flat_upper = flat_upper.index_copy(1, ix, new_upper)
            node_lower, node_upper = flat_lower.reshape(node_lower.shape), flat_upper.reshape(node_upper.shape)
        bounds[node.name] = (node_lower, node_upper)
    value = backward_lower(graph, graph.output_name, spec, bounds, slopes) - offset
    return value, bounds, widths
