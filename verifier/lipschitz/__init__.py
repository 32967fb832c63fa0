"""Lipschitz certificates: upper bounds on the Lipschitz constant of each logit difference ``f_y - f_j``.

If ``|f_y(x') - f_j(x')  - (f_y(x) - f_j(x))| <= L_yj ||x' - x||`` for every ``j``, the top class ``y`` of
``x`` cannot change within ``min_j (f_y(x) - f_j(x)) / L_yj`` of ``x``: a deterministic certified radius
from one forward pass. The bound on ``L_yj`` is the product of layer operator norms (exact spectral norms
of dense layers and small convolutions, a certified bound for large convolutions), activations counted by
their largest slope, residual branches summed, with the last layer's rows ``w_y - w_j`` kept exact.

Typical use::

    from verifier.lipschitz import lipschitz_bounds
    bounds = lipschitz_bounds(net, norm="l2")        # bounds.matrix[y, j] >= Lip(f_y - f_j)
    radius = bounds.radius(logits, labels)           # certified L2 radius per input
"""

from verifier.lipschitz.network import ACTIVATION_CONSTANTS, LipschitzBounds, LipschitzError, lipschitz_bounds
from verifier.lipschitz.operator_norms import Norms, conv_spectral_bound, matrix_norms

__all__ = [
    "ACTIVATION_CONSTANTS",
    "LipschitzBounds",
    "LipschitzError",
    "Norms",
    "conv_spectral_bound",
    "lipschitz_bounds",
    "matrix_norms",
]
