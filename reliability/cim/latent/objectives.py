"""Gradient objectives of chips given in latent space: the clipped margin loss that the worst-case
search descends (:class:`MarginObjective`) and the soft count whose design point the tail
estimators' importance sampling seeks (:func:`soft_count_gradient`).

Both differentiate through the network's backward pass, the layer mapping's linear decode and the
latent transform of :class:`~reliability.cim.latent.LatentChips`.
"""

from __future__ import annotations

import numpy as np

from reliability.cim.latent.chips import LatentChips
from reliability.cim.graph import margin
from reliability.cim.simulate import traced_peak

__all__ = ["SEARCHABLE_BLOCKS", "MarginObjective", "soft_count_gradient"]

#: latent block kinds a search may move: the continuous ones.  The stuck block never: stuck-at
#: faults are discrete events with their own probability, not bounded variation.
SEARCHABLE_BLOCKS = ("prog", "nu", "read", "gain")
_FD_STEP = 1e-4          # latent step of the one-sided difference giving dg/dz (float64 transform)


def _base_device(dev):
    """The device model whose limits (floor, range, gain) apply; a posterior ensemble's first draw."""
    return dev if hasattr(dev, "floor") or not hasattr(dev, "model_at") else dev.model_at(0)


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
        Its DAC/ADC ranges are calibrated on ``x`` unless they already are
        (:meth:`~reliability.cim.ChipSimulator.ensure_calibrated`).
    latent : LatentChips
        Of ``simulator``.
    x, y : arrays
        Evaluation samples and integer labels.
    kappa : float
        Confidence of the clipped margin loss (logit units, >= 0).
    blocks : sequence of str
        Latent block kinds to search (a subset of :data:`SEARCHABLE_BLOCKS`).
    conductance_range : "model" or "clip"
        "model": conductances follow the device model's law (its floor included, no upper clip);
        "clip" also clamps every device to its physical range (:attr:`limits`).
    batch_size : int, optional
        Samples per forward/backward pass (default: from the simulator's memory budget).

    Attributes
    ----------
    device : DeviceModel
        The device model whose limits apply (a posterior ensemble's first draw).
    limits : list of (float, float)
        Per analog layer, the conductance range ``(lo, hi)``: the device model's ``g_range``, else
        the mapping's ``[g_min, g_max]``.
    evaluations, gradient_evaluations : int
        Chips evaluated so far (forward passes over every sample), and of those, with a backward pass.
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
        simulator.ensure_calibrated(self.x)
        # the latent transform in float64 with the identity decode: conductances per layer
        self._conductances = latent.conductance_view(np.float64)
        dev = self.device = _base_device(simulator.device)
        self.limits = []
        for m in simulator.maps:
            lo, hi = dev.g_range if dev.g_range is not None else (m.g_min, m.g_max)
            self.limits.append((float(lo), float(hi)))
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
        g = self._conductances.weights(zfull)
        floor = self.device.floor
        if floor is not None:
            S = g[0].shape[0]
            gain = np.ones(S)
            for (kind, _, _), b in zip(self.latent.blocks, zfull):
                if kind == "gain":
                    gain = np.exp(float(self.device.chip_gain.sigma) * np.asarray(b, dtype=np.float64))
            g = [np.maximum(a, floor * gain.reshape((S,) + (1,) * (a.ndim - 1))) for a in g]
        if self.range == "clip":
            g = [np.clip(a, lo, hi) for a, (lo, hi) in zip(g, self.limits)]
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
        ``sum_n sigmoid(m_n / T)`` (how the worst-case search uses it: :mod:`reliability.worstcase`)."""
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


def soft_count_gradient(simulator, latent: LatentChips, x, y, z, k, T, dtype=np.float64):
    """``g(z) = soft count(z) - (k + 1/2)`` and its gradient in the latent space, for one chip ``z``
    (a block list with chip axis of length 1).

    The soft count is the sum over the evaluation samples ``(x, y)`` of ``sigmoid(margin / T)``;
    gradients flow through the network's backward pass (in ``dtype``, without DAC/ADC) and the
    mapping, scaled by the programming variation's scale (:meth:`LatentChips.scale`; programming
    blocks only: the other blocks get zero gradient).  One chip evaluation: the caller counts it.

    Parameters
    ----------
    simulator : ChipSimulator
        Whose network and layer mappings ``latent`` transforms through.
    latent : LatentChips
        Of ``simulator``.
    x, y : arrays
        Evaluation samples and integer labels.
    z : list of arrays
        The chip's latent blocks, chip axis of length 1.
    k : int
        Count threshold of the event ``n_correct <= k``.
    T : float
        Temperature of the sigmoid (logit units).
    dtype : numpy dtype
        Of the network's forward and backward pass (float64 by default; the tail estimators' mode
        search uses the simulator's own, float32 unless the chip asks for float64: a search
        direction needs no more, and on a CNN float64 costs 1.7 times as much).  The soft count
        and the mapping's chain rule are summed in float64 either way.

    Returns
    -------
    g : float
    grads : list of float64 arrays, one per latent block, shaped like ``z``
    """
    W = latent.weights(z)
    logits, cache = simulator.network.forward(x, weights=W, keep=True, dtype=dtype)
    mg, dmg = margin(logits.astype(np.float64), y, grad=True)
    mg = mg[0]
    sig = 1.0 / (1.0 + np.exp(-mg / T))
    g = float(sig.sum() - (k + 0.5))
    grad_logits = dmg[0] * (sig * (1 - sig) / T)[:, None]       # d soft count / d logits
    gw = simulator.network.backward(cache, grad_logits[None].astype(dtype), input_grad=False).weights
    grads = []
    for (kind, li, shape), b in zip(latent.blocks, z):
        if kind != "prog":
            grads.append(np.zeros_like(b, dtype=np.float64))
            continue
        m = simulator.maps[li]
        dg = m.grad_conductance(gw[li].astype(np.float64))          # (1, r, slices, signs, K, N)
        scale = latent.scale(li)
        grads.append(np.asarray(dg, dtype=np.float64) * np.asarray(scale, dtype=np.float64))
    return g, grads
