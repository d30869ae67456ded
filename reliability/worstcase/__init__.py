"""Worst-case accuracy under bounded device variation, the minimal deviation that breaks a network,
and the devices that carry it.

Yan et al. (ICCAD 2022) showed that device deviations far smaller than typical variation, if they
fall the wrong way, can push a network's accuracy to that of a random guess.  This package answers,
next to the tail estimates of :mod:`reliability.sampling`: *how bad can a chip be while every
device stays within k sigma of its target, and how small a deviation breaks the network?*

Search space
------------
A chip is an exact transform of standard-normal latent blocks ``z`` (:class:`~reliability.cim.latent.
LatentChips`): for additive normal programming variation a device's conductance is
``g = target + loc + scale * z``, so "every device within +/- k sigma of its own variation scale" is
exactly the box ``|z_i| <= k``.  For other families ``z`` is the device's normal quantile (``g =
target + loc + scale F^-1(Phi(z))``), and ``|z| <= k`` keeps each device within the same probability
content as +/- k sigma of a normal.  Two bounds are offered:

- ``norm="linf"``: ``max_i |z_i| <= k`` (every searched latent coordinate within k sigma);
- ``norm="l2"``: ``||z||_2 <= k`` (a total budget in sigma units, summed in quadrature over every
  searched coordinate; a typical random chip has ``||z||_2 ~ sqrt(dim)``).

Which latent blocks are searched (``blocks``): the continuous ones, by default all present of
programming ``"prog"``, drift exponent ``"nu"``, read noise ``"read"`` and chip gain ``"gain"`` (one
scalar per chip, ``|z_gain| <= k`` too).  Blocks left out are held at their median, ``z = 0``, as
is any other latent coordinate (e.g. a posterior-draw index).
**Stuck-at faults are excluded**: they are discrete events with their own probability, not bounded
variation; the stuck block is held at ``z = +inf`` (``Phi(z) = 1``: no device stuck), so the worst
case is that of a chip without stuck devices (the tail tools cover faults).

Physical range: conductances follow the device model's own law, in particular its conductance
``floor`` (``g >= floor``, 0 uS for the PCM/RRAM presets), applied to the conductance read (after
drift and read noise, as :meth:`~reliability.devices.DeviceModel.read` does), so every searched chip
is one the device model can produce; the gradient is zero on floored devices, so the search does
not push them further.  (``LatentChips.weights`` floors after programming and after read noise;
the objective floors the conductance read once more, scaled by the chip gain.)  The model does not
clip at the mapping's ``g_max`` (the Yan et al. weight-level Gaussian is unclipped by definition);
``conductance_range="clip"`` additionally clamps every device to ``[g_min, g_max]`` (the device
model's ``g_range``, else the mapping's), and the deviation statistics report the fraction of
devices at the floor and outside the range either way.

Objective and algorithm
-----------------------
With logits ``f(x_n; z)`` and margin ``m_n(z) = f_y(x_n) - max_{j != y} f_j(x_n)`` (positive when
sample ``n`` is classified correctly), the search minimizes the Carlini-Wagner margin loss

    L(z) = sum_n max(m_n(z), -kappa),

clipped at the confidence ``kappa`` so that samples already misclassified by ``kappa`` stop pulling.
Its gradient in latent space is the chain rule ``dL/dz_i = sum dL/dW * dW/dg * dg/dz_i``: the network's
backward pass gives ``dL/dW`` per chip, :meth:`~reliability.cim.mapping.LayerMapping.grad_conductance`
gives ``dL/dg`` through the linear decode, and the latent transform being elementwise (one device's
conductance depends on that device's ``z`` and the chip's gain only), ``dg/dz`` is a diagonal
Jacobian, taken exactly enough by a one-sided difference of the transform itself (one extra
transform per searched block kind, no per-device loop), so every family, drift, read noise, floor
and chip gain is covered by the same code.

Projected gradient descent, several restarts at once as a batch of chips (chips on axis 0), with a
cosine step decay ``alpha_t = step * k * (1 + cos(pi t / T)) / 2``:

- ``linf``: ``z <- clip(z - alpha_t sign(dL/dz), -k, k)`` (the steepest descent for a box);
- ``l2``: ``z <- P(z - alpha_t dL/dz / ||dL/dz||)``, ``P`` scaling back onto the ball;
- ``optimizer="adam"``: the same projection with Adam's moment-normalized direction.

Restart 0 starts from the previous (smaller) bound's optimum, the others uniformly in the feasible
set.  Every iterate is scored by its exact accuracy (``argmax == y``, from the same forward pass)
and the best chip seen is kept.  Since a chip feasible at ``k`` is feasible at ``k' > k``, the
curve is made monotone: the worst case at ``k'`` is never above the one at ``k``.

The margin loss sums over samples, so samples far from any flip dilute the direction.  Restarts
therefore differ in their objective too (``focus``): restart ``r`` uses the clipped margin loss when
``focus[r]`` is None, else the soft count ``sum_n sigmoid(m_n / T)`` with ``T`` the ``focus[r]``
quantile of its currently positive margins, so the samples closest to flipping pull hardest and
the search breaks the easiest samples first.  (On a trained LeNet-5, 300 Fashion-MNIST images,
``weight-gaussian:sigma=0.01``, bound 1: 43 % accuracy with four clipped-margin restarts, 10 % with
the default mix.  On 16 small linear problems (6 x 4 classifiers, 40 samples, bounds 0.5 to 3)
whose true worst case was solved exactly by mixed-integer programming, the default mix's accuracy
was on average 7 points above the true worst case (at most 12.5), four clipped-margin restarts 14
(at most 20).)

Every reported accuracy is achieved by an explicit chip inside the bound, so it is an **upper
bound** on the true worst-case accuracy (the search is a heuristic; no certificate that nothing
worse exists).  As a sanity check, ``random_chips`` chips drawn uniformly in the same set are
evaluated: a search that does worse than them is flagged (``success = False``).

Minimal deviation: bisection over ``k`` for the smallest bound whose worst case reaches
``accuracy <= threshold``, to a ``tolerance`` in sigma units.  The bracket ``[lo, hi]`` means: at
``hi`` an explicit deviation reaching the threshold was found; at ``lo`` the search found none.

Sensitivity
-----------
Which layers and devices carry the deviation ``z*`` (the minimal breaking chip when a threshold was
given and reached, else the largest bound's worst chip): integrated gradients along the straight
path from the nominal chip, ``a_i = z*_i * mean_t dL/dz_i(t z*)`` (``t`` at ``path_points``
midpoints of [0, 1]), whose sum approximates ``L(z*) - L(0)`` (completeness, reported).  Devices are
ranked by ``s_i = |z*_i| * |mean_t dL/dz_i(t z*)|``: the size of the deviation weighted by the size
of its path-averaged gradient, i.e. the first-order loss change it is responsible for; a layer's
share is its sum of ``s_i`` over the total.  :meth:`Sensitivity.top_devices` turns the ranking
into per-layer device masks (e.g. the devices to write-verify first).

Layout
------
:mod:`~reliability.worstcase.api` (:func:`worst_case`, validation), :mod:`~reliability.worstcase.search`
(descent, restarts, curve, bisection), :mod:`~reliability.worstcase.sensitivity` (deviation size,
attribution), :mod:`~reliability.worstcase.results` (the frozen results).  The objective and its
gradient, :class:`~reliability.cim.latent.MarginObjective`, live with the latent space in
:mod:`reliability.cim.latent`.
"""

from reliability.cim.latent import SEARCHABLE_BLOCKS
from reliability.worstcase.api import DEFAULT_FOCUS, NORMS, OPTIMIZERS, RANGES, worst_case
from reliability.worstcase.results import BoundResult, MinimalBound, Sensitivity, WorstCaseResult

__all__ = [
    "DEFAULT_FOCUS",
    "NORMS",
    "OPTIMIZERS",
    "RANGES",
    "SEARCHABLE_BLOCKS",
    "BoundResult",
    "MinimalBound",
    "Sensitivity",
    "WorstCaseResult",
    "worst_case",
]
