"""Operator families. Importing this package registers every family's converters."""

from verifier.ops import (  # noqa: F401
    activation,
    bilinear,
    conv,
    elementwise,
    indexing,
    linear,
    nonconvex,
    piecewise,
    pooling,
    rounding,
    select,
    shape,
    smooth,
    softmax,
)
