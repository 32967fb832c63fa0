"""The defaults of ``verifier certify`` (a module without torch, so ``--help`` does not import it)."""

#: the methods run when none are named: everything but smoothing (which needs a noise level)
DEFAULT_METHODS = ("clean", "pgd", "ibp", "crown", "alpha", "lipschitz", "complete")
#: seconds the complete verifier gets per input (and epsilon) by default
DEFAULT_TIMEOUT = 1.0
#: radius mode: the bisection stops when the interval is this fraction of the largest epsilon
DEFAULT_RADIUS_TOLERANCE = 1 / 128
