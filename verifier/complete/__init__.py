"""Complete verification: falsification, bounds, branch and bound -> sat / unsat / unknown / timeout."""

from verifier.complete.api import VerifyOptions, verify
from verifier.complete.result import Counterexample, Result
from verifier.complete.robustness import robustness_specification, verify_robustness

__all__ = ["Counterexample", "Result", "VerifyOptions", "robustness_specification", "verify", "verify_robustness"]
