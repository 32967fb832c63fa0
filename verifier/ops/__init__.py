"""Operator families. Importing this package registers every family's converters."""

from verifier.ops import (  # noqa: F401
    activation,
    bilinear,
    conv,
    elementwise,
    linear,
    nonconvex,
    piecewise,
    shape,
    smooth,
)
