"""Entry point: read a VNN-LIB 1.0 property (a file or its text) into a :class:`Specification`."""

from __future__ import annotations

import os

from verifier.errors import ResourceLimitError, SpecError
from verifier.limits import resolve_limit
from verifier.spec.normalize import DEFAULT_MAX_CASES, to_specification
from verifier.spec.parser import ParsedProperty, parse_property
from verifier.spec.reader import Source, read_text
from verifier.spec.specification import Specification

#: assert commands a property may have by default (a CIFAR property has about 3 000)
DEFAULT_MAX_ASSERTIONS = 5_000_000
#: the unpacked text may take this fraction of the memory limit (its tokens take about ten times as much)
TEXT_SHARE = 32


def parse_vnnlib(
    path_or_text: str | os.PathLike,
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    max_cases: int = DEFAULT_MAX_CASES,
    name: str | None = None,
    memory_limit: int | None = None,
    max_assertions: int = DEFAULT_MAX_ASSERTIONS,
) -> Specification:
    """Parse a VNN-LIB 1.0 property into cases ``(box, C, d)``: ``sat`` iff some case has an ``x`` in its
    box with ``C @ f(x) <= d``.

    ``path_or_text``: a path (``str`` or ``PathLike``; gzip-compressed files, ``.vnnlib.gz``, are unpacked)
    or the property text itself (a ``str`` that is not an existing file and starts with ``(`` or ``;``, or
    spans several lines). ``n_inputs``/``n_outputs``: the network's input and output sizes; the declared
    ``X_i``/``Y_j`` must match them. ``max_cases``: limit on the number of cases of the disjunctive normal
    form. ``name``: the name used in error messages (default: the path, or ``<text>``). ``memory_limit``:
    bytes the parsed cases may take (default :func:`verifier.limits.default_memory_limit`); the text may
    have a 32nd of it (tokens take about ten times their text). ``max_assertions``: limit on ``assert``
    commands. Limits are checked before the memory is spent: :class:`~verifier.errors.ResourceLimitError`.
    Raises :class:`~verifier.errors.SpecError` naming ``file:line:col`` on any other error.
    """
    limit = resolve_limit(memory_limit)
    text, label = _read(path_or_text, name, max(limit // TEXT_SHARE, 1 << 20))
    asserts = text.count("assert")
    if asserts > max_assertions:
        raise ResourceLimitError(f"{label}: about {asserts} assertions, more than the limit of {max_assertions} "
                                 "(max_assertions= raises it)")
    source = Source(text, label)
    from verifier.spec.vnnlib2 import vnnlib_version

    if vnnlib_version(source.text) is not None:
        raise SpecError(f"{source.name}: this is a VNN-LIB 2.0 query (it starts with a vnnlib-version header): "
                        "decide it with verifier.frontend.query_verify.verify_query, or on the command line with "
                        "'verifier verify QUERY --network NAME=MODEL.onnx'")
    parsed = parse_property(source)
    inputs = _check_declared(parsed, parsed.input_declarations, "X", "input", n_inputs)
    outputs = _check_declared(parsed, parsed.output_declarations, "Y", "output", n_outputs)
    try:
        return to_specification(parsed, inputs, outputs, max_cases, limit)
    except RecursionError:
        raise source.error(0, "formula nested too deeply to normalise") from None


def _read(path_or_text: str | os.PathLike, name: str | None, max_bytes: int) -> tuple[str, str]:
    if is_property_text(path_or_text):
        if len(path_or_text) > max_bytes:
            raise ResourceLimitError(f"the property text has {len(path_or_text)} characters, more than the limit "
                                     f"of {max_bytes}")
        return path_or_text, name or "<text>"
    if not isinstance(path_or_text, (str, os.PathLike)):
        raise SpecError(f"a property is a path or its text, not {type(path_or_text).__name__}")
    return read_text(path_or_text, max_bytes), name or os.fspath(path_or_text)


def is_property_text(value: object) -> bool:
    """Whether a ``str`` argument is VNN-LIB text rather than a path: not an existing file, and it starts with
    ``(`` or ``;`` (after blanks) or spans several lines. A path may contain ``(``."""
    if not isinstance(value, str) or "(" not in value:
        return False
    if "\n" not in value and os.path.exists(value):
        return False
    return value.lstrip()[:1] in ("(", ";") or "\n" in value


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
