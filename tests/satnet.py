"""ReLU networks that encode random 3-SAT formulas, with their VNN-LIB properties and independent answers.

Encoding (``n`` variables, clauses of 3 distinct variables), inputs ``x in [0, 1]^n``:

* layer 1: ``p_i = relu(x_i)`` (equal to ``x_i`` on the box) and ``g_i = relu(2 x_i - 1)``, so that
  ``t_i = p_i - g_i = min(x_i, 1 - x_i)`` is how far ``x_i`` is from being Boolean;
* layer 2: one neuron per clause, ``v_c = relu(1 - sum of its literals)`` with literal ``p_i`` or ``1 - p_i``
  (1 where a Boolean point violates the clause, 0 where it satisfies it), and ``s = relu(sum_i t_i)``;
* output ``y = 1 - sum_c v_c - 3 s``.

The property (the unsafe set) is ``y >= 1/2``. If the formula has a model ``b``, ``y(b) = 1``: ``sat``. If it
has none, ``y <= 0`` on the whole box: let ``delta = max_i t_i`` and ``b`` the rounding of ``x``; some clause is
violated by ``b``, each of its literals is at most ``delta`` at ``x``, so ``v_c >= 1 - 3 delta`` and
``y <= 1 - (1 - 3 delta) - 3 delta = 0`` (and ``y <= 1 - 3 delta < 0`` once ``delta > 1/3``). So the property
is ``sat`` iff the formula is satisfiable, with a margin of 1/2 either way. Weights are small integers, exact
in float32.

Answers come from brute force over every assignment (up to ~22 variables) or from a small DPLL solver
(unit propagation, most frequent variable first), both independent of the verifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

Formula = list[tuple[tuple[int, bool], ...]]   # clauses of (variable, positive?) literals

#: the penalty on fractional inputs (>= the clause width keeps unsatisfiable formulas at y <= 0)
PENALTY = 3.0
THRESHOLD = 0.5


def random_formula(n: int, m: int, rng: np.random.Generator, planted: np.ndarray | None = None) -> Formula:
    """``m`` random clauses of 3 distinct variables out of ``n``; with ``planted`` (a Boolean assignment) only
    clauses it satisfies are kept, so the formula is satisfiable by construction."""
    clauses: Formula = []
    while len(clauses) < m:
        variables = rng.choice(n, size=3, replace=False)
        signs = rng.integers(0, 2, size=3).astype(bool)
        clause = tuple((int(v), bool(s)) for v, s in zip(variables, signs))
        if planted is not None and not any(planted[v] == s for v, s in clause):
            continue
        clauses.append(clause)
    return clauses


def weights(formula: Formula, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three affine layers ``(W, b)`` of the network (ReLUs between them)."""
    w1 = np.concatenate([np.eye(n), 2 * np.eye(n)])
    b1 = np.concatenate([np.zeros(n), -np.ones(n)])
    m = len(formula)
    w2 = np.zeros((m + 1, 2 * n))
    b2 = np.ones(m + 1)
    for c, clause in enumerate(formula):
        for variable, positive in clause:
            if positive:
                w2[c, variable] -= 1.0            # - p_i
            else:
                w2[c, variable] += 1.0            # - (1 - p_i)
                b2[c] -= 1.0
    w2[m, :n], w2[m, n:] = 1.0, -1.0              # s = relu(sum p_i - g_i)
    b2[m] = 0.0
    w3 = np.concatenate([-np.ones(m), [-PENALTY]]).reshape(1, -1)
    b3 = np.ones(1)
    return [(w1, b1), (w2, b2), (w3, b3)]


def forward(layers, x: np.ndarray) -> np.ndarray:
    """The network's output on inputs ``[N, n]`` in float64."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def to_onnx(formula: Formula, n: int) -> bytes:
    """The network as a serialized float32 ONNX model (Gemm/Relu, input ``[1, n]``, output ``[1, 1]``)."""
    from tests.milp import to_onnx as layers_to_onnx

    return layers_to_onnx(weights(formula, n))


def vnnlib(n: int) -> str:
    """The property: every input in [0, 1], unsafe where ``Y_0 >= 1/2``."""
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)"]
    for i in range(n):
        lines += [f"(assert (>= X_{i} 0))", f"(assert (<= X_{i} 1))"]
    lines.append(f"(assert (>= Y_0 {THRESHOLD}))")
    return "\n".join(lines) + "\n"


def write_instance(folder: Path, name: str, formula: Formula, n: int) -> tuple[Path, Path]:
    """Write ``name.onnx`` and ``name.vnnlib`` into ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    model, prop = folder / f"{name}.onnx", folder / f"{name}.vnnlib"
    model.write_bytes(to_onnx(formula, n))
    prop.write_text(vnnlib(n))
    return model, prop


def brute_force(formula: Formula, n: int, chunk: int = 1 << 16) -> np.ndarray | None:
    """A model of the formula by trying every assignment (``n`` up to ~22), or None."""
    variables = np.array([[v for v, _ in clause] for clause in formula])
    signs = np.array([[s for _, s in clause] for clause in formula])
    for start in range(0, 1 << n, chunk):
        codes = np.arange(start, min(start + chunk, 1 << n), dtype=np.int64)
        bits = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)            # [N, n]
        satisfied = (bits[:, variables] == signs).any(2).all(1)               # [N]
        if satisfied.any():
            return bits[int(np.argmax(satisfied))]
    return None


def dpll(formula: Formula, n: int) -> np.ndarray | None:
    """A model of the formula by DPLL (unit propagation, branching on the most frequent open variable), or
    None when it is unsatisfiable."""
    clauses = [frozenset((v + 1) if s else -(v + 1) for v, s in clause) for clause in formula]

    def solve(clauses: list[frozenset], assignment: dict[int, bool]) -> dict[int, bool] | None:
        while True:
            unit = next((c for c in clauses if len(c) == 1), None)
            if unit is None:
                break
            literal = next(iter(unit))
            clauses = _assign(clauses, literal)
            if clauses is None:
                return None
            assignment = {**assignment, abs(literal): literal > 0}
        if not clauses:
            return assignment
        counts: dict[int, int] = {}
        for clause in clauses:
            for literal in clause:
                counts[literal] = counts.get(literal, 0) + 1
        literal = max(counts, key=lambda lit: counts[lit] + counts.get(-lit, 0))
        for choice in (literal, -literal):
            reduced = _assign(clauses, choice)
            if reduced is not None:
                found = solve(reduced, {**assignment, abs(choice): choice > 0})
                if found is not None:
                    return found
        return None

    found = solve(clauses, {})
    if found is None:
        return None
    return np.array([found.get(i + 1, False) for i in range(n)])


def _assign(clauses: list[frozenset], literal: int) -> list[frozenset] | None:
    out = []
    for clause in clauses:
        if literal in clause:
            continue
        if -literal in clause:
            clause = clause - {-literal}
            if not clause:
                return None
        out.append(clause)
    return out


def satisfies(formula: Formula, assignment: np.ndarray) -> bool:
    return all(any(assignment[v] == s for v, s in clause) for clause in formula)


def instance_set(seed: int = 0, sizes=(20, 30, 40, 50, 60)) -> list[tuple[str, Formula, int, bool]]:
    """The benchmark set: per size, one planted satisfiable formula at 4.2 clauses per variable and one random
    formula at 6 clauses per variable (unsatisfiable with high probability); ``(name, formula, n,
    satisfiable)``, the answer from DPLL (checked by brute force up to 22 variables)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        planted = rng.integers(0, 2, n).astype(bool)
        for kind, formula in (("sat", random_formula(n, int(4.2 * n), rng, planted)),
                              ("rand", random_formula(n, 6 * n, rng))):
            model = dpll(formula, n)
            if model is not None:
                assert satisfies(formula, model)
            out.append((f"sat3_n{n}_{kind}", formula, n, model is not None))
    return out
