"""Errors a user can act on.

Every failure that comes from the user's input (a model file, a property, a box) is raised as a
subclass of :class:`VerifierError` with a message that names the file, node or argument at fault.
The CLI prints these messages without a traceback. Tokens of the input quoted in a message are
shortened with :func:`shorten`, so a megabyte-long token cannot flood a terminal or a results file.
"""

from __future__ import annotations

#: longest piece of user input quoted in an error message (longer ones keep their start and end)
QUOTE_LIMIT = 60


def shorten(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``text`` on one line and at most about ``limit`` characters: longer text keeps its start and its end
    around ``...``, control characters become ``?``."""
    value = "".join(c if c.isprintable() else "?" for c in str(text))
    if len(value) <= limit:
        return value
    keep = max(limit - 5, 8)
    return f"{value[: keep - keep // 3]}...{value[-(keep // 3):]}"


def quote(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr``-style quotes around :func:`shorten`'s result: ``'name'``."""
    return "'" + shorten(text, limit).replace("'", "\\'") + "'"


class VerifierError(Exception):
    """Base class of all errors the verifier raises on purpose."""


class ModelLoadError(VerifierError):
    """The model file could not be read or is not a valid network."""


class UnsupportedOperatorError(ModelLoadError):
    """The model uses an operator (or an operator configuration) the engine cannot handle."""

    def __init__(self, op_type: str, node_name: str, reason: str = "", supported: list[str] | None = None):
        self.op_type = op_type
        self.node_name = node_name
        detail = f": {reason}" if reason else ""
        message = f"unsupported operator {quote(op_type)} at node {quote(node_name)}{detail}"
        self.supported = sorted(supported or [])
        listed = ", ".join(self.supported)
        if supported and len(listed) <= 300:
            message += f". Supported operators: {listed}"
        elif supported:  # a long list would drown the one line: the common ones, and where to find the rest
            common = [op for op in ("Gemm", "MatMul", "Conv", "Relu", "Sigmoid", "Add", "Reshape") if op in supported]
            message += (f". {len(self.supported)} operators are supported ({', '.join(common)}, ...); "
                        "'verifier supports --onnx-operators' lists them all")
        super().__init__(message)


class ShapeError(VerifierError):
    """Tensor shapes do not fit together (a box of the wrong size, a spec matrix of the wrong width...)."""


class InvalidWeightError(ModelLoadError):
    """A weight of the model is NaN or infinite."""


class SpecError(VerifierError):
    """A property file (VNN-LIB) is malformed or outside the accepted subset; the message names file:line:col."""


class ResourceLimitError(VerifierError):
    """An input would need more memory or work than the limit allows (a declared tensor of 10^9 values, a
    constant that unfolds to terabytes, a property with millions of cases); the message names what and the
    limit, and how to raise it."""


class OptionError(VerifierError, ValueError):
    """An argument or option has an invalid value (a NaN or negative timeout, an infinite radius...)."""
