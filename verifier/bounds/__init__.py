"""Bound propagation: IBP (forward intervals) and CROWN (backward linear relaxation)."""
