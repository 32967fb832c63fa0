"""Errors a user can act on.

Every failure that comes from the user's input (a model file, a property, a box) is raised as a
subclass of :class:`VerifierError` with a message that names the file, node or argument at fault.
The CLI prints these messages without a traceback.
"""


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
        message = f"unsupported operator {op_type!r} at node {node_name!r}{detail}"
        if supported:
            message += f". Supported operators: {', '.join(sorted(supported))}"
        super().__init__(message)


class ShapeError(VerifierError):
    """Tensor shapes do not fit together (a box of the wrong size, a spec matrix of the wrong width...)."""


class InvalidWeightError(ModelLoadError):
    """A weight of the model is NaN or infinite."""


class SpecError(VerifierError):
    """A property file (VNN-LIB) is malformed or outside the accepted subset; the message names file:line:col."""
