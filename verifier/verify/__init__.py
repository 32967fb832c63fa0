"""Complete verification: falsification, bounds, branch and bound -> sat / unsat / unknown / timeout."""

from verifier.verify.api import VerifyOptions, verify
from verifier.verify.result import Counterexample, Result

__all__ = ["Counterexample", "Result", "VerifyOptions", "verify"]
