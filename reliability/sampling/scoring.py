"""Scoring chips: how many evaluation samples a chip classifies correctly, with a continuous
tie-breaker so that chips with equal counts are still ordered.

``score = n_correct + sigmoid((mean margin - centre) / tau)``: the integer part is the hard count that defines
the event (``accuracy <= a`` is ``score < k + 1`` with ``k = floor(a n)``); the fractional part,
in (0, 1), ranks chips with equal counts by how close their samples are to flipping.
"""

from __future__ import annotations

import numpy as np

from reliability.cim import correct_and_margins
from reliability.cim.latent import soft_count_gradient

__all__ = ["ChipScorer"]


class ChipScorer:
    """Scores chips given as latent vectors (see :class:`reliability.cim.latent.LatentChips`).

    Counts every chip it evaluates in :attr:`evaluations`, a design-point gradient as one chip
    (:meth:`gradient`; those are also counted in :attr:`gradients`).  Estimators evaluate chips only
    through these methods, so the counter is the cost of a run.
    """

    def __init__(self, simulator, latent, x, y, chunk: int | None = None):
        self.sim = simulator
        self.latent = latent
        self.x = np.asarray(x)
        self.y = np.asarray(y).astype(np.int64)
        self.n = int(self.y.size)
        self.tau = 1.0
        self.centre = 0.0
        self.evaluations = 0
        self.gradients = 0
        simulator.ensure_calibrated(self.x)
        self.chunk = int(chunk or max(1, simulator.chips_per_chunk(self.x, 256)))

    def _chunks(self, z: list[np.ndarray]):
        """``(start, n_correct, per-sample margins)`` of the chips in ``z``, a chunk at a time."""
        adc = bool(self.sim.spec.periphery.adc_bits)
        for s0 in range(0, z[0].shape[0], self.chunk):
            part = [b[s0:s0 + self.chunk] for b in z]
            W, levels = self.latent.weights(part, with_levels=True) if adc else (self.latent.weights(part), None)
            logits = self.sim.forward_weights(self.x, W, levels)
            yield (s0, *correct_and_margins(logits, self.y))

    def counts_and_margins(self, z: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        S = z[0].shape[0]
        counts = np.empty(S, dtype=np.int64)
        mm = np.empty(S, dtype=np.float64)
        for s0, cnt, mg in self._chunks(z):
            counts[s0:s0 + len(cnt)] = cnt
            mm[s0:s0 + len(cnt)] = mg.astype(np.float64).mean(axis=1)
        self.evaluations += S
        return counts, mm

    def sample_margins(self, z: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(n_correct, margins)`` with the margin of every evaluation sample, ``(S, n)``."""
        S = z[0].shape[0]
        counts = np.empty(S, dtype=np.int64)
        out = np.empty((S, self.n))
        for s0, cnt, mg in self._chunks(z):
            counts[s0:s0 + len(cnt)] = cnt
            out[s0:s0 + len(cnt)] = mg
        self.evaluations += S
        return counts, out

    def gradient(self, z: list[np.ndarray], k: int, T: float) -> tuple[float, list[np.ndarray]]:
        """The soft count's distance to the event ``n_correct <= k`` and its gradient at one chip
        (:func:`reliability.cim.latent.soft_count_gradient`, temperature ``T``, in the simulator's
        dtype); one evaluation."""
        out = soft_count_gradient(self.sim, self.latent, self.x, self.y, z, k, T, dtype=self.sim.dtype)
        self.evaluations += 1
        self.gradients += 1
        return out

    @property
    def analog_layers(self) -> int:
        """Number of the network's analog (crossbar) layers."""
        return len(self.sim.network.analog_layers)

    def score(self, z: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(score, n_correct)`` of each chip in ``z``."""
        counts, mm = self.counts_and_margins(z)
        return self.combine(counts, mm), counts

    def set_scale(self, margins: np.ndarray) -> None:
        """Centre and spread of the tie-breaker, from a sample of chips' mean margins."""
        self.centre = float(np.median(margins))
        self.tau = float(max(np.std(margins), 1e-9))

    def combine(self, counts, mm):
        z = np.clip((np.asarray(mm) - self.centre) / self.tau, -30.0, 30.0)
        return counts + 1.0 / (1.0 + np.exp(-z))
