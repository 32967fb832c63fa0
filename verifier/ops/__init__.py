"""Operator families. Importing this package registers every family's converters."""

from verifier.ops import activation, conv, elementwise, linear, shape  # noqa: F401
