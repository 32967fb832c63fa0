"""Properties: VNN-LIB 1.0 files -> cases (input box, C, d), and counterexamples in the VNN-COMP format.

Typical use::

    from verifier.spec import parse_vnnlib
    spec = parse_vnnlib("prop_1.vnnlib", n_inputs=net.input_size, n_outputs=net.output_size)
    for group in spec.box_groups():          # cases sharing one input box, rows stacked
        bounds = net.bounds(group.lower, group.upper, C=group.C)   # then compare with group.d

The modules of this package import only NumPy (no torch), so reading a property is cheap at start-up.
"""

from verifier.errors import SpecError
from verifier.spec.formula import evaluate
from verifier.spec.normalize import DEFAULT_MAX_CASES
from verifier.spec.specification import BoxGroup, Case, Specification, group_by_box
from verifier.spec.vnnlib import parse_vnnlib
from verifier.spec.witness import (
    VNNCOMP_OUTPUT_RTOL,
    VNNCOMP_TOLERANCE,
    WitnessCheck,
    check_counterexample,
    format_counterexample,
    format_result,
    parse_counterexample,
)

__all__ = [
    "DEFAULT_MAX_CASES",
    "VNNCOMP_OUTPUT_RTOL",
    "VNNCOMP_TOLERANCE",
    "BoxGroup",
    "Case",
    "SpecError",
    "Specification",
    "WitnessCheck",
    "check_counterexample",
    "evaluate",
    "format_counterexample",
    "format_result",
    "group_by_box",
    "parse_counterexample",
    "parse_vnnlib",
]
