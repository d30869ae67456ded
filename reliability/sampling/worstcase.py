"""Worst-case accuracy under bounded device variation, the minimal deviation that breaks a network,
and the devices that carry it.

Yan et al. (ICCAD 2022) showed that device deviations far smaller than typical variation, if they
fall the wrong way, can push a network's accuracy to that of a random guess.  This module answers,
next to the tail estimates of :mod:`reliability.sampling.tail`: *how bad can a chip be while every
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
not push them further.  (``LatentChips.weights`` floors after programming only; the objective adds
the floor after read noise itself.)  The model does not clip at the mapping's ``g_max`` (the Yan et
al. weight-level Gaussian is unclipped by definition); ``conductance_range="clip"`` additionally
clamps every device to ``[g_min, g_max]`` (the device model's ``g_range``, else the mapping's), and
the deviation statistics report the fraction of devices at the floor and outside the range either
way.

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
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from reliability._json import jsonable
from reliability.cim.latent import LatentChips
from reliability.cim.network import margin
from reliability.cim.simulate import ChipSimulator, traced_peak
from reliability.errors import ModelSpecError, ReliabilityError

__all__ = [
    "DEFAULT_FOCUS",
    "NORMS",
    "OPTIMIZERS",
    "SEARCHABLE_BLOCKS",
    "BoundResult",
    "MarginObjective",
    "MinimalBound",
    "Sensitivity",
    "WorstCaseResult",
    "worst_case",
]

NORMS = ("linf", "l2")
OPTIMIZERS = ("pgd", "adam")
RANGES = ("model", "clip")
#: latent block kinds the search may move (the stuck block never: see the module docstring)
SEARCHABLE_BLOCKS = ("prog", "nu", "read", "gain")
#: per restart (cycled): None for the clipped margin loss, q for the soft count at the q-quantile
#: temperature (see :func:`_search`)
DEFAULT_FOCUS = (None, 0.2, 0.05, 0.01)

# spawn-key tags of the search's random streams (disjoint from chip indices used by the simulator)
_TAG_RESTART = 2**31 - 11
_TAG_RANDOM = 2**31 - 12
_FD_STEP = 1e-4          # latent step of the one-sided difference giving dg/dz (float64 transform)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))))


# ====================================================================================== objective
class _SimulatorView:
    """The simulator as the latent transform sees it, with identity decodes (see below)."""

    def __init__(self, sim):
        self._sim = sim
        self.maps = [_DecodeNothing() for _ in sim.maps]

    def __getattr__(self, name):
        return getattr(self._sim, name)


def _base_device(dev):
    """The device model whose limits (floor, range, gain) apply; a posterior ensemble's first draw."""
    return dev if hasattr(dev, "floor") or not hasattr(dev, "model_at") else dev.model_at(0)


class _DecodeNothing:
    """A stand-in layer mapping whose decode is the identity: the latent transform then returns
    conductances instead of effective weights."""

    @staticmethod
    def decode(g):
        return g

    @staticmethod
    def slice_levels(g):
        return g


class MarginObjective:
    """The clipped margin loss of chips given in latent space, its exact accuracy and its gradient.

    ``L(z) = sum_n max(m_n(z), -kappa)`` over the samples ``(x, y)``; ``z`` is given as a list of
    the *searched* latent blocks (chip axis first); the other blocks are held fixed (continuous
    ones at 0, stuck at +inf: no stuck device).  :meth:`value_and_grad` can instead return, per
    chip, the gradient of the soft count ``sum_n sigmoid(m_n / T)`` (``temperature``).  Gradients
    are exact through the network's backward pass and the linear decode; the latent transform's
    diagonal Jacobian ``dg/dz`` is a one-sided difference (step 1e-4) of the float64 transform.

    Parameters
    ----------
    simulator : ChipSimulator
    latent : LatentChips
        Of ``simulator``.
    x, y : arrays
        Evaluation samples and integer labels.
    kappa : float
        Confidence of the clipped margin loss (logit units, >= 0).
    blocks : sequence of str
        Latent block kinds to search (a subset of :data:`SEARCHABLE_BLOCKS`).
    conductance_range : "model" or "clip"
        "clip" clamps every device to its physical range (see the module docstring).
    batch_size : int, optional
        Samples per forward/backward pass (default: from the simulator's memory budget).
    """

    def __init__(self, simulator, latent, x, y, kappa: float = 0.0, blocks=SEARCHABLE_BLOCKS,
                 conductance_range: str = "model", batch_size: int | None = None):
        self.sim = simulator
        self.latent = latent
        self.x = np.asarray(x)
        self.y = np.asarray(y).astype(np.int64)
        self.n = int(self.y.size)
        self.kappa = float(kappa)
        self.range = conductance_range
        kinds = set(blocks)
        self.block_index = [i for i, (k, _, _) in enumerate(latent.blocks) if k in kinds]
        self.kinds = sorted({latent.blocks[i][0] for i in self.block_index})
        self.shapes = [latent.blocks[i][2] for i in self.block_index]
        self.dim = int(sum(int(np.prod(s)) for s in self.shapes))
        self._adc = bool(simulator.spec.periphery.adc_bits)
        if simulator.periphery.active and simulator._calibrated_on is None:
            simulator.calibrate(self.x[: min(len(self.x), 256)])
        # the latent transform in float64 with the identity decode: conductances per layer
        proxy = copy.copy(latent)
        proxy.sim = _SimulatorView(simulator)
        proxy.dtype = np.dtype(np.float64)
        if isinstance(getattr(proxy, "_par_cache", None), dict):
            proxy._par_cache = {}      # float64 parameters must not leak into the latent's own cache
        self._proxy = proxy
        dev = self._device = _base_device(simulator.device)
        self._limits = []
        for m in simulator.maps:
            lo, hi = dev.g_range if dev.g_range is not None else (m.g_min, m.g_max)
            self._limits.append((float(lo), float(hi)))
        self._batch = None if batch_size is None else max(1, int(batch_size))
        self._per_chip_sample = None
        self.evaluations = 0          # chip evaluations (forward passes over all samples)
        self.gradient_evaluations = 0  # of which with a backward pass

    # -------------------------------------------------------------- latent vectors
    def zeros(self, S: int) -> list[np.ndarray]:
        return [np.zeros((S,) + s, dtype=np.float64) for s in self.shapes]

    def full(self, zs: list[np.ndarray], dtype=np.float64) -> list[np.ndarray]:
        """The complete latent vector (every block) for searched blocks ``zs``."""
        S = zs[0].shape[0] if zs else 1
        out = []
        it = iter(zs)
        searched = set(self.block_index)
        for i, (kind, _, shape) in enumerate(self.latent.blocks):
            if i in searched:
                out.append(np.asarray(next(it), dtype=dtype))
            elif kind == "stuck":
                out.append(np.full((S,) + shape, np.inf, dtype=dtype))
            else:
                out.append(np.zeros((S,) + shape, dtype=dtype))
        return out

    # -------------------------------------------------------------- conductances and weights
    def conductances(self, zfull: list[np.ndarray]) -> list[np.ndarray]:
        """Each analog layer's device conductances ``(S, r, slices, signs, K, N)`` (float64).

        The device model's law (:meth:`~reliability.devices.DeviceModel.read`): the floor applies to
        the conductance read, after drift and read noise, before the chip gain."""
        g = self._proxy.weights(zfull)
        floor = self._device.floor
        if floor is not None:
            S = g[0].shape[0]
            gain = np.ones(S)
            for (kind, _, _), b in zip(self.latent.blocks, zfull):
                if kind == "gain":
                    gain = np.exp(float(self._device.chip_gain.sigma) * np.asarray(b, dtype=np.float64))
            g = [np.maximum(a, floor * gain.reshape((S,) + (1,) * (a.ndim - 1))) for a in g]
        if self.range == "clip":
            g = [np.clip(a, lo, hi) for a, (lo, hi) in zip(g, self._limits)]
        return g

    def weights(self, g: list[np.ndarray]):
        """Effective weights (and ADC slice levels) in the simulator's dtype from conductances."""
        dt = self.sim.dtype
        W = [m.decode(a).astype(dt, copy=False) for m, a in zip(self.sim.maps, g)]
        levels = [m.slice_levels(a).astype(dt, copy=False) for m, a in zip(self.sim.maps, g)] if self._adc else None
        return W, levels

    def _jacobians(self, zfull, g):
        """Diagonal of dg/dz per searched kind: {kind: list over layers of arrays like g}."""
        J = {}
        for kind in self.kinds:
            zp = [b + _FD_STEP if k == kind else b for b, (k, _, _) in zip(zfull, self.latent.blocks)]
            gp = self.conductances(zp)
            J[kind] = [(a - b) / _FD_STEP for a, b in zip(gp, g)]
        return J

    # -------------------------------------------------------------- forward / backward
    def _sample_batch(self, S: int) -> int:
        if self._batch is not None:
            return self._batch
        if self._per_chip_sample is None:
            probe = self.x[: min(self.n, 16)]
            zs = self.zeros(2)
            W, levels = self.weights(self.conductances(self.full(zs)))

            def probe_pass():
                out, cache = self.sim.forward_weights(probe, W, levels, keep=True)
                self.sim.network.backward(cache, np.zeros_like(out), input_grad=False)

            peak = traced_peak(probe_pass)
            self._per_chip_sample = max(peak / (2 * len(probe)), 1.0)
        budget = self.sim.spec.memory_budget_MB * 2**20
        return int(max(1, min(self.n, budget // (self._per_chip_sample * max(S, 1)))))

    def _loss_terms(self, logits, yb, temperature=None):
        """Per chip: loss, correct count, dL/dlogits and margins.

        The loss is the clipped margin loss; its gradient is that of the clipped margin loss for
        chips whose ``temperature`` is inf (or None), else of the soft count
        ``sum_n sigmoid(m_n / T)`` (see :func:`_search`)."""
        lg = np.asarray(logits, dtype=np.float64)
        mg, dmg = margin(lg, yb, grad=True)          # dmg: +1 true class, -1 strongest wrong class
        loss = np.maximum(mg, -self.kappa).sum(axis=1)
        correct = (np.argmax(lg, axis=-1) == yb[None, :]).sum(axis=1)
        active = (mg > -self.kappa).astype(np.float64)
        if temperature is not None:
            T = np.asarray(temperature, dtype=np.float64).reshape(-1, 1)
            soft = np.isfinite(T[:, 0])
            if np.any(soft):
                Ts = T[soft]
                sg = 1.0 / (1.0 + np.exp(-np.clip(mg[soft] / Ts, -60, 60)))
                active[soft] = sg * (1 - sg) / Ts
        G = dmg * active[..., None]
        return loss, correct, G, mg

    def counts(self, zs: list[np.ndarray], chunk: int = 16) -> np.ndarray:
        """Exact number of correctly classified samples of each chip in ``zs`` (chips in chunks)."""
        S = zs[0].shape[0]
        return np.concatenate([self.evaluate([b[s0:s0 + chunk] for b in zs])[1] for s0 in range(0, S, chunk)])

    def evaluate(self, zs: list[np.ndarray]):
        """``(loss (S,), n_correct (S,), margins (S, n))`` of the chips ``zs`` (forward only)."""
        W, levels = self.weights(self.conductances(self.full(zs)))
        S = W[0].shape[0]
        B = self._sample_batch(S)
        loss = np.zeros(S)
        correct = np.zeros(S, dtype=np.int64)
        margins = []
        for b0 in range(0, self.n, B):
            lg = self.sim.forward_weights(self.x[b0:b0 + B], W, levels)
            lo, co, _, mg = self._loss_terms(lg, self.y[b0:b0 + B])
            loss += lo
            correct += co
            margins.append(mg)
        self.evaluations += S
        return loss, correct, np.concatenate(margins, axis=1)

    def value_and_grad(self, zs: list[np.ndarray], temperature=None):
        """``(loss (S,), n_correct (S,), dL/dz, margins (S, n))`` with ``dL/dz`` a list like ``zs``
        (float64); ``temperature`` (S,): per chip, inf for the clipped margin loss's gradient, else
        the soft count's.

        This is the helper a gradient-based search needs: d(sum over samples of the clipped margin
        loss)/d(latent) for a batch of chips, through the network, the decode and the latent
        transform."""
        zfull = self.full(zs)
        g = self.conductances(zfull)
        J = self._jacobians(zfull, g)
        W, levels = self.weights(g)
        S = W[0].shape[0]
        B = self._sample_batch(S)
        loss = np.zeros(S)
        correct = np.zeros(S, dtype=np.int64)
        dW = None
        margins = []
        for b0 in range(0, self.n, B):
            lg, cache = self.sim.forward_weights(self.x[b0:b0 + B], W, levels, keep=True)
            lo, co, G, mg = self._loss_terms(lg, self.y[b0:b0 + B], temperature)
            loss += lo
            correct += co
            margins.append(mg)
            gw = self.sim.network.backward(cache, G.astype(self.sim.dtype), input_grad=False).weights
            dW = [w.astype(np.float64) for w in gw] if dW is None else [a + w for a, w in zip(dW, gw)]
        self.evaluations += S
        self.gradient_evaluations += S
        dg = [m.grad_conductance(w) for m, w in zip(self.sim.maps, dW)]
        grads = []
        for bi in self.block_index:
            kind, li, _ = self.latent.blocks[bi]
            if kind == "gain":
                grads.append(sum(np.sum((d * j).reshape(S, -1), axis=1) for d, j in zip(dg, J["gain"])))
            else:
                grads.append(np.asarray(dg[li] * J[kind][li], dtype=np.float64))
        return loss, correct, grads, np.concatenate(margins, axis=1)


# ====================================================================================== results
@dataclass(frozen=True, eq=False)
class BoundResult:
    """The worst case found at one bound.

    ``accuracy`` is achieved by an explicit chip inside the bound (``z``), hence an upper bound on
    the true worst case.  ``source`` says which candidate achieved it: "search" (this bound's
    search), "smaller bound" (the worst chip of a smaller bound, feasible here: monotonicity),
    "random" (a random chip of the baseline: the search underperformed) or "nominal" (bound 0).
    ``search_accuracy`` is this bound's search alone; ``restart_accuracies`` the best of each restart.

    ``deviation`` describes the worst chip: ``max_abs_z``, ``mean_abs_z``, ``rms_z``, ``l2_norm`` (sigma
    units over the searched coordinates), ``at_bound_fraction`` (linf: share of coordinates at
    ``|z| = k``; l2: ``||z||_2 / k``), ``mean_abs_z_by_kind``, ``weights`` (per layer, the largest and
    mean ``|W - W_nominal| / max|W_layer|``), ``floor_fraction`` (devices at the model's floor; None
    without one) and ``outside_range_fraction`` (devices outside ``[g_min, g_max]``).
    """

    bound: float
    norm: str
    accuracy: float
    n_correct: int
    clean_accuracy: float
    search_accuracy: float
    random_min_accuracy: float
    random_mean_accuracy: float
    random_chips: int
    restarts: int
    iterations: int
    source: str
    deviation: dict
    seconds: float
    restart_accuracies: tuple = ()
    z: tuple = field(default=(), repr=False)   # the worst chip's complete latent vector (every block, 1 chip)

    def to_dict(self) -> dict:
        return jsonable({"bound": self.bound, "norm": self.norm, "accuracy": self.accuracy,
                         "n_correct": self.n_correct, "clean_accuracy": self.clean_accuracy,
                         "search_accuracy": self.search_accuracy, "random_min_accuracy": self.random_min_accuracy,
                         "random_mean_accuracy": self.random_mean_accuracy, "random_chips": self.random_chips,
                         "restarts": self.restarts, "iterations": self.iterations, "source": self.source,
                         "restart_accuracies": list(self.restart_accuracies), "deviation": self.deviation,
                         "seconds": self.seconds})


@dataclass(frozen=True)
class MinimalBound:
    """The smallest bound found whose worst case reaches ``accuracy <= threshold`` (bisection).

    ``bound`` (= ``bracket[1]``) has an explicit deviation reaching the threshold; at ``bracket[0]``
    the search found none.  ``bound`` is None when nothing up to ``max_bound`` reached it.
    """

    threshold: float
    bound: float | None
    bracket: tuple
    accuracy: float | None
    accuracy_below: float
    tolerance: float
    searches: int
    found: bool
    message: str = ""

    def to_dict(self) -> dict:
        return jsonable({"threshold": self.threshold, "bound": self.bound, "bracket": list(self.bracket),
                         "accuracy": self.accuracy, "accuracy_below": self.accuracy_below,
                         "tolerance": self.tolerance, "searches": self.searches, "found": self.found,
                         "message": self.message})


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """Which layers and devices carry a worst-case deviation (ranking: see the module docstring).

    ``scores``/``z``/``gradient``: one array per searched latent block (without the chip axis),
    ``blocks``: their ``(kind, layer index, shape)``.
    """

    bound: float
    chip: str
    criterion: str
    layers: tuple
    top: tuple
    completeness: dict
    gain: dict | None
    blocks: tuple = field(default=(), repr=False)
    layer_names: tuple = field(default=(), repr=False)
    scores: tuple = field(default=(), repr=False)
    z: tuple = field(default=(), repr=False)
    gradient: tuple = field(default=(), repr=False)

    def to_dict(self) -> dict:
        return jsonable({"bound": self.bound, "chip": self.chip, "criterion": self.criterion,
                         "layers": list(self.layers), "top": list(self.top), "completeness": self.completeness,
                         "chip_gain": self.gain})

    def to_polars(self) -> pl.DataFrame:
        """Every searched device coordinate (chip gain excluded), highest score first."""
        parts = []
        for (kind, li, shape), s, z, g in zip(self.blocks, self.scores, self.z, self.gradient):
            if kind == "gain":
                continue
            idx = np.unravel_index(np.arange(s.size), shape)
            parts.append(pl.DataFrame({
                "layer": np.full(s.size, li, dtype=np.int64), "name": [self.layer_names[li]] * s.size,
                "kind": [kind] * s.size, "replica": idx[0].astype(np.int64), "slice": idx[1].astype(np.int64),
                "sign": idx[2].astype(np.int64), "row": idx[3].astype(np.int64), "column": idx[4].astype(np.int64),
                "z": z.ravel(), "gradient": g.ravel(), "score": s.ravel()}))
        if not parts:
            return pl.DataFrame()
        return pl.concat(parts).sort("score", descending=True)

    def top_devices(self, fraction: float | None = None, count: int | None = None, kind: str | None = "prog"):
        """Boolean masks, one per analog layer (device shape ``(r, slices, signs, K, N)``), marking
        the highest-scoring devices: the top ``count`` devices or ``fraction`` of all devices.
        ``kind``: which latent block's scores rank (default "prog", the programming deviation that
        write-verify corrects); None sums the scores of every kind of a device."""
        if (fraction is None) == (count is None):
            raise ReliabilityError("top_devices: give exactly one of fraction (0..1) or count (>= 0).")
        per_layer = {}
        for (k, li, shape), s in zip(self.blocks, self.scores):
            if k == "gain" or (kind is not None and k != kind):
                continue
            per_layer[li] = per_layer.get(li, 0) + s
        if not per_layer:
            raise ReliabilityError(f"top_devices: no searched block of kind {kind!r}; searched: "
                                   f"{sorted({k for k, _, _ in self.blocks})}.")
        layers = sorted(per_layer)
        flat = np.concatenate([per_layer[li].ravel() for li in layers])
        if fraction is not None:
            if not (0.0 <= fraction <= 1.0):
                raise ReliabilityError(f"top_devices: fraction must be in [0, 1]; got {fraction!r}.")
            count = round(fraction * flat.size)
        count = int(count)
        if count < 0:
            raise ReliabilityError(f"top_devices: count must be >= 0; got {count}.")
        chosen = np.zeros(flat.size, dtype=bool)
        if count:
            chosen[np.argsort(-flat, kind="stable")[:count]] = True
        masks, start = [], 0
        by_layer = {}
        for li in layers:
            a = per_layer[li]
            by_layer[li] = chosen[start:start + a.size].reshape(a.shape)
            start += a.size
        for li in range(len(self.layer_names)):
            masks.append(by_layer.get(li))
        return masks


@dataclass(frozen=True, eq=False)
class WorstCaseResult:
    """Worst-case accuracy versus bound, the minimal breaking deviation and the sensitivity ranking."""

    bounds: tuple
    minimal_bound: MinimalBound | None
    sensitivity: Sensitivity | None
    seconds: float
    norm: str
    optimizer: str
    kappa: float
    n_samples: int
    clean_accuracy: float
    latent_dim: int
    searched_blocks: tuple
    seed: int
    evaluations: int
    success: bool = True
    message: str = ""
    diagnostics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The documented JSON form (``reliability worstcase --json``)."""
        return jsonable({"bounds": [b.to_dict() for b in self.bounds],
                         "minimal_bound": None if self.minimal_bound is None else self.minimal_bound.to_dict(),
                         "sensitivity": None if self.sensitivity is None else self.sensitivity.to_dict(),
                         "seconds": self.seconds, "norm": self.norm, "optimizer": self.optimizer,
                         "kappa": self.kappa, "n_samples": self.n_samples, "clean_accuracy": self.clean_accuracy,
                         "latent_dim": self.latent_dim, "searched_blocks": list(self.searched_blocks),
                         "seed": self.seed, "evaluations": self.evaluations, "success": self.success,
                         "message": self.message, "diagnostics": self.diagnostics})

    def to_polars(self) -> pl.DataFrame:
        """The worst-case accuracy versus bound curve, one row per bound."""
        return pl.DataFrame([{k: v for k, v in b.to_dict().items() if k != "deviation"}
                             | {"max_abs_z": b.deviation.get("max_abs_z"),
                                "at_bound_fraction": b.deviation.get("at_bound_fraction")} for b in self.bounds])

    @property
    def accuracy(self) -> np.ndarray:
        return np.array([b.accuracy for b in self.bounds])


# ====================================================================================== validation
def _check_args(bounds, norm, threshold, tolerance, restarts, iterations, step, optimizer, kappa, random_chips,
                conductance_range, max_bound, path_points):
    if norm not in NORMS:
        raise ReliabilityError(f"norm must be one of {NORMS} ('linf': every device within +/- k sigma; 'l2': a "
                               f"total budget ||z||_2 <= k); got {norm!r}.")
    if optimizer not in OPTIMIZERS:
        raise ReliabilityError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}.")
    if conductance_range not in RANGES:
        raise ReliabilityError(f"conductance_range must be one of {RANGES}; got {conductance_range!r}.")
    if isinstance(bounds, (int, float, np.integer, np.floating)):
        bounds = [bounds]
    try:
        bl = [float(b) for b in bounds]
    except (TypeError, ValueError):
        raise ReliabilityError(f"bounds must be numbers (k, in sigma units); got {bounds!r}.") from None
    if not bl and threshold is None:
        raise ReliabilityError("nothing to search: give at least one bound (e.g. bounds=[3]) or a threshold.")
    for b in bl:
        if not math.isfinite(b) or b < 0:
            raise ReliabilityError(f"bound {b!r}: a bound is a deviation size in sigma units and must be a finite "
                                   "number >= 0 (e.g. 3 for every device within +/- 3 sigma).")
    if threshold is not None:
        t = float(threshold)
        if not (0.0 <= t <= 1.0) or not math.isfinite(t):
            raise ReliabilityError(f"threshold {threshold!r}: an accuracy threshold must be in [0, 1] "
                                   "(e.g. 0.1 for a random guess among 10 classes).")
    if not (math.isfinite(float(tolerance)) and float(tolerance) > 0):
        raise ReliabilityError(f"tolerance {tolerance!r}: the bisection tolerance must be a positive number "
                               "of sigma units (e.g. 0.05).")
    if max_bound is not None and not (math.isfinite(float(max_bound)) and float(max_bound) > 0):
        raise ReliabilityError(f"max_bound {max_bound!r}: must be a positive finite number of sigma units.")
    for name, v, lo in (("restarts", restarts, 1), ("iterations", iterations, 1), ("random_chips", random_chips, 0),
                        ("path_points", path_points, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ReliabilityError(f"{name} must be an integer >= {lo}; got {v!r}.")
    if not (math.isfinite(float(step)) and 0 < float(step) <= 2):
        raise ReliabilityError(f"step {step!r}: the initial step, as a fraction of the bound, must be in (0, 2].")
    if kappa is not None and not (math.isfinite(float(kappa)) and float(kappa) >= 0):
        raise ReliabilityError(f"kappa {kappa!r}: the margin-loss confidence must be a finite number >= 0 "
                               "(logit units), or None for the default.")
    return sorted(set(bl))


def _check_focus(focus):
    if focus is None or isinstance(focus, (int, float)):
        focus = (focus,)
    focus = tuple(focus)
    if not focus:
        raise ReliabilityError("focus must hold at least one entry (None for the clipped margin loss, or a "
                               "quantile in (0, 1) for the soft count).")
    for q in focus:
        if q is not None and not (isinstance(q, (int, float)) and 0 < float(q) < 1):
            raise ReliabilityError(f"focus entry {q!r}: use None (clipped margin loss) or a quantile in (0, 1) "
                                   "of the positive margins (soft-count temperature).")
    return tuple(None if q is None else float(q) for q in focus)


# ====================================================================================== search
def _norms(blocks, S):
    return np.sqrt(sum(np.sum(np.asarray(b, dtype=np.float64).reshape(S, -1) ** 2, axis=1) for b in blocks))


def _project(zs, k, norm):
    S = zs[0].shape[0]
    if norm == "linf":
        for b in zs:
            np.clip(b, -k, k, out=b)
        return zs
    nrm = _norms(zs, S)
    f = np.where(nrm > k, k / np.maximum(nrm, 1e-300), 1.0)
    for b in zs:
        b *= f.reshape((S,) + (1,) * (b.ndim - 1))
    return zs


def _uniform(obj, k, norm, rng, S):
    """``S`` chips uniform in the box ``|z| <= k`` or the ball ``||z||_2 <= k``."""
    if norm == "linf":
        return [k * (2.0 * rng.random((S,) + s) - 1.0) for s in obj.shapes]
    zs = [rng.standard_normal((S,) + s) for s in obj.shapes]
    nrm = _norms(zs, S)
    r = k * rng.random(S) ** (1.0 / max(obj.dim, 1))
    f = r / np.maximum(nrm, 1e-300)
    return [b * f.reshape((S,) + (1,) * (b.ndim - 1)) for b in zs]


def _take(zs, i):
    return [b[i:i + 1].copy() for b in zs]


def _temperatures(margins, focus):
    """Per chip: inf (clipped margin loss) where ``focus`` is None, else the ``focus`` quantile of
    that chip's positive margins (inf when none is left)."""
    T = np.full(len(focus), np.inf)
    for i, q in enumerate(focus):
        if q is None:
            continue
        pos = margins[i][margins[i] > 0]
        if pos.size:
            T[i] = max(float(np.quantile(pos, q)), 1e-12)
    return T


def _search(obj, k, norm, inits, iterations, step, optimizer, focus=(None,)):
    """Batched projected descent from the chips ``inits`` (restarts on axis 0); the best chip seen.

    Restart ``r`` descends the clipped margin loss when ``focus[r % len(focus)]`` is None, else the
    soft count ``sum_n sigmoid(m_n / T)`` with ``T`` the ``focus`` quantile of its current positive
    margins (updated every iteration): the samples closest to flipping pull hardest, so the
    restart breaks the easiest samples first instead of spreading the budget over samples it
    cannot break.  Returns ``(z (1 chip, searched blocks), n_correct, loss)`` by the iterates'
    exact accuracy."""
    z = _project([np.concatenate(p, axis=0).astype(np.float64) for p in zip(*inits)], k, norm)
    S = z[0].shape[0]
    best = (np.inf, np.inf, None)
    foc = [focus[r % len(focus)] for r in range(S)]
    margins = obj.evaluate(z)[2] if any(q is not None for q in foc) else None

    per_restart = np.full(S, np.iinfo(np.int64).max)

    def consider(loss, correct, zs):
        nonlocal best
        np.minimum(per_restart, correct, out=per_restart)
        i = int(np.lexsort((loss, correct))[0])
        if (correct[i], loss[i]) < best[:2]:
            best = (int(correct[i]), float(loss[i]), _take(zs, i))

    m1 = [np.zeros_like(b) for b in z] if optimizer == "adam" else None
    m2 = [np.zeros_like(b) for b in z] if optimizer == "adam" else None
    b1, b2 = 0.9, 0.999
    for t in range(iterations):
        T = _temperatures(margins, foc) if margins is not None else None
        loss, correct, grads, mg = obj.value_and_grad(z, T)
        if margins is not None:
            margins = mg
        consider(loss, correct, z)
        alpha = step * k * 0.5 * (1.0 + math.cos(math.pi * t / iterations))
        if optimizer == "adam":
            d = []
            for a, v, g in zip(m1, m2, grads):
                a *= b1
                a += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                d.append((a / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + 1e-30))
        elif norm == "linf":
            d = [np.sign(g) for g in grads]
        else:
            d = grads
        if norm == "l2":
            dn = _norms(d, S)
            f = np.where(dn > 0, 1.0 / np.maximum(dn, 1e-300), 0.0)
            d = [g * f.reshape((S,) + (1,) * (g.ndim - 1)) for g in d]
        for b, g in zip(z, d):
            b -= alpha * g
        _project(z, k, norm)
    loss, correct, _ = obj.evaluate(z)
    consider(loss, correct, z)
    return best[2], best[0], best[1], per_restart


# ====================================================================================== statistics
def _deviation_stats(obj, zs, k, norm, g0) -> dict:
    """Size of one chip's deviation: in sigma units, in weight units per layer, and against the
    physical conductance range."""
    flat = np.concatenate([np.abs(np.asarray(b, dtype=np.float64)).ravel() for b in zs]) if zs else np.zeros(0)
    if flat.size == 0:
        return {}
    d = {"max_abs_z": float(flat.max()), "mean_abs_z": float(flat.mean()),
         "rms_z": float(np.sqrt(np.mean(flat ** 2))), "l2_norm": float(np.sqrt(np.sum(flat ** 2)))}
    if norm == "linf":
        d["at_bound_fraction"] = float(np.mean(flat >= k * (1 - 1e-9))) if k > 0 else 0.0
    else:
        d["at_bound_fraction"] = float(d["l2_norm"] / k) if k > 0 else 0.0
    by_kind = {}
    for (kind, _, _), b in zip([obj.latent.blocks[i] for i in obj.block_index], zs):
        by_kind.setdefault(kind, []).append(np.abs(np.asarray(b)).ravel())
    d["mean_abs_z_by_kind"] = {kk: float(np.concatenate(v).mean()) for kk, v in by_kind.items()}
    g = obj.conductances(obj.full(zs))
    W, _ = obj.weights(g)
    W0, _ = obj.weights(g0)
    dev = obj._device
    layers = []
    n_dev = n_floor = n_out = 0
    for li, (layer, w, w0, a, (lo, hi)) in enumerate(zip(obj.sim.network.analog_layers, W, W0, g, obj._limits)):
        m = float(layer.layer_max_abs) or 1.0
        dw = np.abs(w[0].astype(np.float64) - w0[0].astype(np.float64)) / m
        layers.append({"layer": li, "name": layer.name, "max_rel_weight_deviation": float(dw.max()),
                       "mean_rel_weight_deviation": float(dw.mean())})
        n_dev += a.size
        if dev.floor is not None:
            n_floor += int(np.count_nonzero(a <= dev.floor))
        n_out += int(np.count_nonzero((a < lo - 1e-12) | (a > hi + 1e-12)))
    d["weights"] = layers
    d["floor_fraction"] = n_floor / n_dev if dev.floor is not None else None
    d["outside_range_fraction"] = n_out / n_dev
    return d


def _sensitivity(obj, zs, k, chip, path_points, top) -> Sensitivity:
    P = int(path_points)
    ts = np.concatenate([(np.arange(P) + 0.5) / P, [0.0, 1.0]])
    path = [np.concatenate([t * b for t in ts], axis=0) for b in zs]
    loss, _, grads, _ = obj.value_and_grad(path)
    gbar = [g[:P].mean(axis=0) for g in grads]
    zstar = [b[0] for b in zs]
    attr = [z * g for z, g in zip(zstar, gbar)]
    scores = [np.abs(a) for a in attr]
    blocks = tuple(obj.latent.blocks[i] for i in obj.block_index)
    names = tuple(layer.name for layer in obj.sim.network.analog_layers)
    total = float(sum(float(np.sum(s)) for s in scores))
    layers = []
    for li, name in enumerate(names):
        idx = [j for j, (kind, l2, _) in enumerate(blocks) if l2 == li and kind != "gain"]
        if not idx:
            continue
        s = sum(float(np.sum(scores[j])) for j in idx)
        by_kind = {blocks[j][0]: (float(np.sum(scores[j])) / total if total > 0 else 0.0) for j in idx}
        layers.append({"layer": li, "name": name, "devices": int(sum(scores[j].size for j in idx)),
                       "share": s / total if total > 0 else 0.0,
                       "attribution": float(sum(float(np.sum(attr[j])) for j in idx)),
                       "mean_abs_z": float(np.mean(np.concatenate([np.abs(zstar[j]).ravel() for j in idx]))),
                       "share_by_kind": by_kind})
    gain = None
    gi = [j for j, (kind, _, _) in enumerate(blocks) if kind == "gain"]
    if gi:
        j = gi[0]
        gain = {"z": float(zstar[j]), "gradient": float(gbar[j]), "attribution": float(attr[j]),
                "share": float(scores[j]) / total if total > 0 else 0.0}
    # top devices over every searched per-device coordinate
    cand = []
    for j, (kind, li, shape) in enumerate(blocks):
        if kind == "gain":
            continue
        s = scores[j].ravel()
        n = min(top, s.size)
        if n == 0:
            continue
        part = np.argpartition(-s, n - 1)[:n]
        for f in part:
            cand.append((float(s[f]), j, int(f)))
    cand.sort(key=lambda c: -c[0])
    tops = []
    for s, j, f in cand[:top]:
        kind, li, shape = blocks[j]
        idx = [int(v) for v in np.unravel_index(f, shape)]
        tops.append({"layer": li, "name": names[li], "kind": kind, "device": idx, "weight": idx[-2:],
                     "z": float(zstar[j].ravel()[f]), "gradient": float(gbar[j].ravel()[f]), "score": s})
    completeness = {"sum_attribution": float(sum(float(np.sum(a)) for a in attr)),
                    "loss_change": float(loss[P + 1] - loss[P]), "path_points": P}
    crit = ("|z_i| * |mean over t of dL/dz_i(t z*)| (integrated-gradients magnitude, L = clipped margin loss; "
            f"{P} path points)")
    return Sensitivity(float(k), chip, crit, tuple(layers), tuple(tops), completeness, gain, blocks, names,
                       tuple(scores), tuple(zstar), tuple(gbar))


# ====================================================================================== entry point
def worst_case(network, x, y, variation, *, bounds=(3.0,), norm: str = "linf", threshold: float | None = None,
               tolerance: float = 0.05, max_bound: float | None = None, restarts: int = 4, iterations: int = 30,
               step: float = 0.25, optimizer: str = "pgd", kappa: float | None = None,
               focus=DEFAULT_FOCUS, random_chips: int = 100,
               blocks=SEARCHABLE_BLOCKS, conductance_range: str = "model", sensitivity: bool = True,
               path_points: int = 8, top: int = 20, batch_size: int | None = None, seed: int = 0,
               simulator: ChipSimulator | None = None, progress=None) -> WorstCaseResult:
    """Worst-case accuracy of ``network`` on ``(x, y)`` over chips whose devices stay within a bound.

    Parameters
    ----------
    network : reliability.cim.Network
    x, y : arrays
        Evaluation inputs and integer labels.
    variation : ChipSpec, shorthand (``weight-gaussian:sigma=S``...) or chip file
    bounds : float or sequence of float
        Bounds ``k`` in sigma units (>= 0); the curve is reported in increasing order, each bound
        warm-started from the previous one's worst chip and made monotone.
    norm : "linf" or "l2"
        ``max |z_i| <= k`` (every device within +/- k sigma) or ``||z||_2 <= k``.
    threshold : float, optional
        Also bisect for the smallest bound whose worst case reaches ``accuracy <= threshold``.
    tolerance : float
        Bisection stops when the bracket is narrower than this (sigma units).
    max_bound : float, optional
        Largest bound the bisection tries when no curve bound reaches the threshold (default 32
        for linf, ``32 sqrt(dim)`` for l2: the L2 norm of the linf box corner at 32).
    restarts, iterations, step, optimizer
        Chips searched at once, descent steps, initial step as a fraction of ``k``, "pgd" or "adam".
    kappa : float, optional
        Margin-loss confidence (logit units); default 5 % of the median clean |margin|.
    random_chips : int
        Chips drawn uniformly in the same set as a baseline (0: none).
    blocks : sequence of str
        Latent block kinds searched (default: every continuous one the device model has).
    conductance_range : "model" or "clip"
        "clip": also clamp devices to [g_min, g_max].
    sensitivity : bool
        Compute the layer/device ranking (one batched gradient of ``path_points + 2`` chips).
    top : int
        Devices listed in the sensitivity's ``top``.
    batch_size : int, optional
        Samples per forward/backward pass (default: from the chip's memory budget).
    seed : int
        Seeds the restarts and the random baseline (``SeedSequence(seed)`` children; no global state).
    simulator : ChipSimulator, optional
        Reuse an existing simulator of ``network`` and ``variation``.
    progress : callable, optional
        ``progress(done, total)`` after each search (total grows during the bisection).

    Returns
    -------
    WorstCaseResult
    """
    t_start = time.perf_counter()
    bl = _check_args(bounds, norm, threshold, tolerance, restarts, iterations, step, optimizer, kappa,
                     random_chips, conductance_range, max_bound, path_points)
    focus = _check_focus(focus)
    sim = simulator or ChipSimulator(network, variation)
    if sim.spec.periphery.drift_compensation:
        raise ModelSpecError("the worst-case search does not support periphery.drift_compensation (it rescales each "
                             "chip by a second read of the same chip, outside the latent transform); set "
                             "drift_compensation = false in the [periphery] section of the chip file.")
    bad = sorted(set(blocks) - set(SEARCHABLE_BLOCKS))
    if bad:
        hint = " Stuck-at faults are not bounded variation and are never searched." if "stuck" in bad else ""
        raise ReliabilityError(f"blocks {bad} cannot be searched; choose from {SEARCHABLE_BLOCKS}.{hint}")
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64)
    if x.shape[0] != y.shape[0] or y.size == 0:
        raise ReliabilityError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; give one label per sample "
                               "(at least one).")
    latent = LatentChips(sim)
    obj = MarginObjective(sim, latent, x, y, 0.0, blocks, conductance_range, batch_size)
    if not obj.block_index:
        present = sorted({k for k, _, _ in latent.blocks})
        raise ReliabilityError(f"nothing to search: the device model has no latent block of kinds {list(blocks)} "
                               f"(it has {present or 'none'}); a variation-free chip has no worst case.")
    n = obj.n
    # the nominal chip (every searched block at 0)
    z0 = obj.zeros(1)
    g0 = obj.conductances(obj.full(z0))
    _, _, mg0 = obj.evaluate(z0)
    if kappa is None:
        am = np.abs(mg0[0])
        am = am[am > 0]
        kappa = 0.05 * float(np.median(am)) if am.size else 0.0
    obj.kappa = float(kappa)

    def official(zs):
        return np.asarray(obj.counts(zs), dtype=np.int64)

    clean_n = int(official(z0)[0])
    clean_acc = clean_n / n
    if max_bound is None:
        max_bound = 32.0 if norm == "linf" else 32.0 * math.sqrt(obj.dim)
    counter = {"calls": 0, "total": len(bl)}
    last_restarts = []

    def tick():
        counter["calls"] += 1
        if progress is not None:
            progress(counter["calls"], max(counter["total"], counter["calls"]))

    def run_search(k, warm):
        """Search at bound k from the warm chips (feasible at k) plus random restarts."""
        warm = [w for w in warm if w is not None][:restarts]
        rng = _rng(seed, _TAG_RESTART, counter["calls"])
        inits = list(warm)
        if len(inits) < restarts:
            inits.append(_uniform(obj, k, norm, rng, restarts - len(inits)))
        zb, _, _, per = _search(obj, k, norm, inits, iterations, step, optimizer, focus)
        tick()
        last_restarts[:] = [int(c) / n for c in per]
        return zb, int(official(zb)[0])

    def random_baseline(k):
        if random_chips == 0 or k == 0:
            return np.zeros(0, dtype=np.int64), None
        chips = [_uniform(obj, k, norm, _rng(seed, _TAG_RANDOM, i), 1) for i in range(random_chips)]
        zs = [np.concatenate(p, axis=0) for p in zip(*chips)]
        c = official(zs)
        i = int(np.argmin(c))
        return c, _take(zs, i)

    records = []
    prev_z, prev_n = z0, clean_n
    warnings = []
    beaten = False
    for k in bl:
        t0 = time.perf_counter()
        if k == 0:
            zb, nb, src, search_n = z0, clean_n, "nominal", clean_n
            rc, rz = np.zeros(0, dtype=np.int64), None
            rs, its = 0, 0
            last_restarts[:] = []
        else:
            search_z, search_n = run_search(k, [prev_z])
            rc, rz = random_baseline(k)
            cands = [(search_n, 0, "search", search_z), (prev_n, 1, "smaller bound", prev_z)]
            if rz is not None:
                cands.append((int(rc.min()), 2, "random", rz))
            nb, _, src, zb = min(cands, key=lambda c: c[:2])
            rs, its = restarts, iterations
            if rc.size and search_n > rc.min():
                beaten = True
                warnings.append(f"bound {k:g}: the search ({search_n}/{n} correct) did worse than the best of "
                                f"{rc.size} random chips ({int(rc.min())}/{n}); increase restarts or iterations")
        dev = _deviation_stats(obj, zb, k, norm, g0)
        records.append(BoundResult(
            float(k), norm, nb / n, int(nb), clean_acc, search_n / n,
            float(rc.min() / n) if rc.size else float("nan"), float(rc.mean() / n) if rc.size else float("nan"),
            int(rc.size), rs, its, src, dev, time.perf_counter() - t0, tuple(last_restarts),
            tuple(obj.full(zb, dtype=latent.dtype))))
        prev_z, prev_n = zb, nb

    # ---------------------------------------------------------------- minimal breaking bound
    minimal = None
    sens_chip = (records[-1].z, records[-1].bound, "largest bound") if records else None
    if threshold is not None:
        thr = float(threshold)
        t_count = math.floor(thr * n + 1e-9)
        searches0 = counter["calls"]
        if clean_n <= t_count:
            minimal = MinimalBound(thr, 0.0, (0.0, 0.0), clean_acc, clean_acc, float(tolerance), 0, True,
                                   "the nominal chip is already at or below the threshold")
        else:
            lo, lo_z, lo_n = 0.0, z0, clean_n
            hi = hi_z = hi_n = None
            for r in records:
                zsr = [r.z[i].astype(np.float64) for i in obj.block_index]
                if r.n_correct <= t_count:
                    hi, hi_z, hi_n = r.bound, zsr, r.n_correct
                    break
                lo, lo_z, lo_n = r.bound, zsr, r.n_correct
            while hi is None and lo < max_bound:
                k = min(max(2.0 * lo, 1.0), float(max_bound))
                counter["total"] += 1
                zk, nk = run_search(k, [lo_z])
                if nk <= t_count:
                    hi, hi_z, hi_n = k, zk, nk
                else:
                    lo = k
                    if nk < lo_n:
                        lo_z, lo_n = zk, nk
            while hi is not None and hi - lo > tolerance:
                mid = 0.5 * (lo + hi)
                counter["total"] += 1
                scaled = [b * (mid / hi) for b in hi_z]
                zk, nk = run_search(mid, [lo_z, scaled])
                if nk <= t_count:
                    hi, hi_z, hi_n = mid, zk, nk
                else:
                    lo = mid
                    if nk < lo_n:
                        lo_z, lo_n = zk, nk
            found = hi is not None
            msg = "" if found else (f"no deviation up to the bound {max_bound:g} reached accuracy <= {thr:g}; "
                                    "raise max_bound, restarts or iterations")
            minimal = MinimalBound(thr, None if not found else float(hi), (float(lo), None if not found else float(hi)),
                                   None if not found else hi_n / n, lo_n / n, float(tolerance),
                                   counter["calls"] - searches0, found, msg)
            if found and hi > 0:
                sens_chip = (tuple(obj.full(hi_z, dtype=latent.dtype)), float(hi), "minimal breaking bound")
            if not found:
                warnings.append(msg)

    sens = None
    if sensitivity and sens_chip is not None:
        zfull, kk, label = sens_chip
        zs = [np.asarray(zfull[i], dtype=np.float64) for i in obj.block_index]
        sens = _sensitivity(obj, zs, kk, label, path_points, int(top))
    success = not beaten
    return WorstCaseResult(tuple(records), minimal, sens, time.perf_counter() - t_start, norm, optimizer,
                           float(kappa), n, clean_acc, obj.dim, tuple(obj.kinds), int(seed),
                           int(obj.evaluations), success, "; ".join(warnings),
                           {"gradient_evaluations": obj.gradient_evaluations, "searches": counter["calls"],
                            "step": float(step), "conductance_range": conductance_range,
                            "max_bound": float(max_bound)})
