"""Entry point: read a VNN-LIB 1.0 property (a file or its text) into a :class:`Specification`."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from verifier.errors import SpecError
from verifier.spec.normalize import DEFAULT_MAX_CASES, to_specification
from verifier.spec.parser import ParsedProperty, parse_property
from verifier.spec.reader import Source
from verifier.spec.specification import Specification


def parse_vnnlib(
    path_or_text: str | os.PathLike,
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    max_cases: int = DEFAULT_MAX_CASES,
    name: str | None = None,
) -> Specification:
    """Parse a VNN-LIB 1.0 property into cases ``(box, C, d)``: ``sat`` iff some case has an ``x`` in its
    box with ``C @ f(x) <= d``.

    ``path_or_text``: a path (``str`` or ``PathLike``; ``.gz`` files are decompressed) or the property text
    itself (a ``str`` containing ``(`` is taken as text). ``n_inputs``/``n_outputs``: the network's input
    and output sizes; the declared ``X_i``/``Y_j`` must match them. ``max_cases``: limit on the number of
    cases of the disjunctive normal form. ``name``: the name used in error messages (default: the path,
    or ``<text>``). Raises :class:`~verifier.errors.SpecError` naming ``file:line:col`` on any error.
    """
    source = Source(*_read(path_or_text, name))
    from verifier.spec.vnnlib2 import vnnlib_version

    if vnnlib_version(source.text) is not None:
        raise SpecError(f"{source.name}: this is a VNN-LIB 2.0 query (it starts with a vnnlib-version header): "
                        "decide it with verifier.frontend.query_verify.verify_query, or on the command line with "
                        "'verifier verify QUERY --network NAME=MODEL.onnx'")
    parsed = parse_property(source)
    inputs = _check_declared(parsed, parsed.input_declarations, "X", "input", n_inputs)
    outputs = _check_declared(parsed, parsed.output_declarations, "Y", "output", n_outputs)
    try:
        return to_specification(parsed, inputs, outputs, max_cases)
    except RecursionError:
        raise source.error(0, "formula nested too deeply to normalise") from None


def _read(path_or_text: str | os.PathLike, name: str | None) -> tuple[str, str]:
    if isinstance(path_or_text, str) and "(" in path_or_text:
        return path_or_text, name or "<text>"
    path = Path(path_or_text)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as file:
                text = file.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read property file {path}: {error}") from None
    return text, name or str(path)


def _check_declared(
    parsed: ParsedProperty, declared: dict[int, int], prefix: str, what: str, expected: int | None
) -> int:
    """The number of declared variables ``prefix_0 .. prefix_{n-1}``; checks they are contiguous and match."""
    source = parsed.source
    if not declared:
        raise source.error(0, f"the property declares no {what} variables ({prefix}_0, {prefix}_1, ...)")
    count = len(declared)
    first = min(declared.values())
    missing = sorted(set(range(count)) - set(declared))
    if missing:
        raise source.error(declared[max(declared)], f"{what} variables must be numbered {prefix}_0 .. "
                                                    f"{prefix}_{count - 1}; {prefix}_{missing[0]} is not declared")
    if expected is not None and count != expected:
        raise source.error(first, f"the property declares {count} {what}s ({prefix}_0 .. {prefix}_{count - 1}) "
                                  f"but the network has {expected} {what}s")
    return count
