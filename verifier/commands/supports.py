"""Report what the verifier supports (the VNN-LIB standard's ``supports`` command), one capability per call.

Answers come from the code: the ONNX operators are those the ONNX front end converts (plus those it folds
when their inputs are shapes); each has a floating-point error model (:mod:`verifier.frontend.roundoff`,
checked by the tests). Element types are those whose semantics the engine bounds soundly: floating-point types
through the rounding-error envelope, integers exactly, ``real`` in real arithmetic.

Examples:
  verifier supports --onnx-operators
  verifier supports --vnnlib-versions
"""

from __future__ import annotations

import argparse

#: min and max ONNX opset the front end handles (attribute defaults that changed in between are followed)
ONNX_OPSETS = (9, 21)
VNNLIB_VERSIONS = ("1.0", "2.0")
ELEMENT_TYPES = ("real", "float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
                 "uint16", "uint8")
#: operators the front end folds at load time whose inputs are shapes (always constants)
SHAPE_OPERATORS = ("ConstantOfShape",)

THEORIES = {
    "hidden_node_theories": ("NH", "H"),
    "multiple_input_output_theories": ("SIO", "MIO"),
    "multiple_network_theories": ("SNET", "MENET", "MINET", "MNET"),
    "multiple_node_comparison_theories": ("SNC", "MNC"),
    "arithmetic_complexity_theories": ("BND", "OUTC", "LIN", "POLY"),
}
BOOLEANS = {
    # disjunctions are expanded to disjunctive normal form (cases sharing an input box are bounded together)
    "optimised_disjunctive_reasoning": False,
    "serialise_assignments": True,
    "unsat_proofs": False,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--onnx-operators", action="store_true", help="supported ONNX operators (and element types)")
    group.add_argument("--onnx-operators-unsat-proofs", action="store_true",
                       help="operators supported with UNSAT proofs (none: proofs are not produced)")
    group.add_argument("--onnx-opset-versions", action="store_true", help="minimum and maximum ONNX opset")
    group.add_argument("--onnx-element-types", action="store_true", help="supported element types")
    group.add_argument("--vnnlib-versions", action="store_true", help="minimum and maximum VNN-LIB version")
    for option in THEORIES:
        group.add_argument("--" + option.replace("_", "-"), action="store_true", help="supported theories")
    for option in BOOLEANS:
        group.add_argument("--" + option.replace("_", "-"), action="store_true", help="true or false")


def operator_lines() -> list[str]:
    """One line per supported ONNX operator. No element types follow the names: each operator is analysed for
    every element type reported by ``--onnx-element-types`` that its ONNX schema allows (floating types with
    their rounding error, integers exactly, integer division truncated)."""
    from verifier.frontend.onnx_loader import supported_onnx_ops

    return sorted(set(supported_onnx_ops()) | set(SHAPE_OPERATORS))


def answer(args: argparse.Namespace) -> list[str]:
    """The lines answering the capability asked for."""
    if args.onnx_operators:
        return operator_lines()
    if args.onnx_operators_unsat_proofs:
        return []
    if args.onnx_opset_versions:
        return [str(v) for v in ONNX_OPSETS]
    if args.onnx_element_types:
        return list(ELEMENT_TYPES)
    if args.vnnlib_versions:
        return list(VNNLIB_VERSIONS)
    for option, theories in THEORIES.items():
        if getattr(args, option):
            return list(theories)
    for option, value in BOOLEANS.items():
        if getattr(args, option):
            return ["true" if value else "false"]
    raise AssertionError("argparse requires one capability")


def run(args: argparse.Namespace) -> int:
    for line in answer(args):
        print(line)
    return 0
