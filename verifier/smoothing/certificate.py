"""The certificate randomized smoothing gives, labelled as what it is.

It is a statement about the *smoothed* classifier ``g`` (Cohen et al. 2019), not the network ``f``
that a VNN-COMP property is about, and it holds with probability ``1 - alpha`` over the sampling, not
with certainty. It therefore never becomes a VNN-COMP ``unsat``: a verifier that falls back to
smoothing answers ``unknown`` for the property and attaches this certificate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: the only VNN-COMP result a smoothing certificate may be reported as (see the module docstring)
VNNCOMP_RESULT = "unknown"

#: the ways a smoothing attempt can end
STATUSES = {
    "certified": "the smoothed classifier returns the label on the whole L2 ball",
    "radius_too_small": "the smoothed classifier returns the label, but the certified radius is below epsilon",
    "abstained": "CERTIFY abstained: the lower confidence bound on pA is below 1/2",
    "other_class": "the smoothed classifier's most likely class is not the label",
}


@dataclass(frozen=True)
class SmoothingCertificate:
    """A probabilistic L2 robustness certificate about the smoothed classifier.

    ``certified`` is True when, with probability at least ``confidence = 1 - alpha`` over the noise
    samples drawn, the smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)`` returns
    ``label`` for every ``x`` within L2 distance ``epsilon_l2`` of ``center`` (because the certified
    ``radius > epsilon_l2``). It says nothing certain about the base network ``f`` itself.

    ``predicted`` is the class CERTIFY chose (``-1`` on abstention), ``count`` its votes among the ``n``
    estimation samples, ``p_lower`` the Clopper-Pearson lower bound on its probability, ``counts`` the
    votes per class, ``n0`` the selection samples. ``fallback_reason`` says why smoothing was used.
    """

    status: str
    label: int
    predicted: int
    radius: float
    epsilon_l2: float
    sigma: float
    alpha: float
    n0: int
    n: int
    count: int
    p_lower: float
    counts: list[int] = field(repr=False)
    fallback_reason: str = ""
    time_s: float = 0.0
    seed: int = 0
    kind: str = "randomized smoothing (Cohen et al. 2019), probabilistic, about the smoothed classifier"

    @property
    def certified(self) -> bool:
        return self.status == "certified"

    @property
    def confidence(self) -> float:
        """Probability, over the sampling, that the certificate is correct: ``1 - alpha``."""
        return 1.0 - self.alpha

    @property
    def vnncomp_result(self) -> str:
        """Always ``"unknown"``: a probabilistic statement about ``g`` proves nothing about ``f``."""
        return VNNCOMP_RESULT

    def statement(self) -> str:
        """The certificate in one sentence."""
        if self.certified:
            return (f"with probability >= {self.confidence:g} over the sampling, the Gaussian-smoothed classifier "
                    f"(sigma {self.sigma:g}) predicts class {self.label} everywhere within L2 radius "
                    f"{self.radius:.4g} > epsilon {self.epsilon_l2:g} of the centre; nothing is proved about "
                    f"the base network")
        detail = f"radius {self.radius:.4g}, epsilon {self.epsilon_l2:g}"
        return f"no smoothing certificate: {STATUSES[self.status]} ({detail})"

    def to_dict(self) -> dict:
        """A JSON-ready dictionary with every field, the confidence and the one-sentence statement."""
        result = asdict(self)
        result.update(certified=self.certified, confidence=self.confidence, vnncomp_result=self.vnncomp_result,
                      statement=self.statement())
        return result

    def __str__(self) -> str:
        return self.statement()
