"""Importance sampling with a mean shift to the design point, mixed with the nominal law.

The proposal is ``q = a N(0, I) + (1 - a) N(mu, I)`` in the chips' latent space, with ``mu`` the
design point: the most probable latent vector (smallest norm) on the boundary of a smooth
surrogate of the event, found by the HL-RF iteration ``z <- (grad g . z - g) grad g / |grad g|^2``
on ``g(z) = soft count(z) - (k + 1/2)`` (soft count: sum over samples of sigmoid(margin / T)),
with gradients from the network's backward pass through the mapping.  Weights are
``w = 1 / (a + (1 - a) exp(mu . z - |mu|^2 / 2))``; any ``mu`` gives an unbiased estimate, the design
point only makes it efficient.  Diagnostics: effective sample size of the weighted indicators and
the Pareto shape k-hat of their largest weights (PSIS, arviz): k-hat > 0.7 means the variance
estimate, and hence the interval, cannot be trusted.

Measured findings (notes in ../shared/notes): in 10^3..10^5 latent dimensions a single mean shift
misses much of the failure mass; this estimator is kept as a swappable strategy and compared with
subset simulation by the benchmark, not used by default.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from reliability.cim.network import margin
from reliability.errors import ReliabilityError

__all__ = ["MeanShiftImportanceSampling", "soft_count_gradient"]


class MeanShiftImportanceSampling:
    name = "importance-sampling (mean shift)"

    def __init__(self, defensive: float = 0.1, search_iterations: int = 30, temperature: float | None = None):
        if not (0 < defensive < 1):
            raise ValueError("defensive must be in (0, 1)")
        self.a = defensive
        self.iterations = search_iterations
        self.temperature = temperature
        self.max_norm = 8.0   # Phi(-8) ~ 6e-16

    # ------------------------------------------------------------------ design point
    def design_point(self, scorer, latent, k: int, T: float):
        z = [np.zeros((1,) + s, dtype=np.float64) for _, _, s in latent.blocks]
        for _ in range(self.iterations):
            g, gr = soft_count_gradient(scorer, latent, [b.astype(latent.dtype) for b in z], k, T)
            gg = sum(float(np.sum(v * v)) for v in gr)
            if gg <= 0:
                break
            gz = sum(float(np.sum(v * b)) for v, b in zip(gr, z))
            c = (gz - g) / gg
            new = [c * v for v in gr]
            norm = math.sqrt(sum(float(np.sum(b * b)) for b in new))
            if norm > self.max_norm:          # beyond any probability of interest: keep the direction
                new = [b * (self.max_norm / norm) for b in new]
            z = [0.5 * (a + b) for a, b in zip(z, new)]   # damped HL-RF step
        return z

    # ------------------------------------------------------------------ sampling
    def run(self, scorer, latent, count_thresholds: list[int], budget: int, seed: int, chunk: int = 256):
        if not count_thresholds:
            raise ReliabilityError("importance sampling estimates --below thresholds; give at least one.")
        # tie-breaker scale and temperature from a small pilot at the nominal law
        pilot = min(100, budget // 20)
        z0 = latent.stack([latent.draw_chip(seed, i) for i in range(pilot)])
        W0 = latent.weights(z0)
        mg0 = margin(scorer.sim.forward_weights(scorer.x, W0), scorer.y)
        scorer.evaluations += pilot
        # temperature: the typical chip-to-chip spread of one sample's margin
        T = self.temperature or float(max(np.median(np.std(mg0, axis=0)), 1e-3))
        kmin = min(count_thresholds)
        mu = self.design_point(scorer, latent, kmin, T)
        mu32 = [b.astype(latent.dtype) for b in mu]
        mu_norm2 = float(sum(np.sum(b * b) for b in mu))
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(2**31 - 2,))))
        n = max(0, budget - scorer.evaluations)
        logw, counts = [], []
        for s0 in range(0, n, chunk):
            S = min(chunk, n - s0)
            z = latent.draw(rng, S)
            shifted = rng.random(S) >= self.a
            for b, m in zip(z, mu32):
                b[shifted] += m[0]
            dot = sum(np.sum((b.astype(np.float64) * m).reshape(S, -1), axis=1) for b, m in zip(z, mu))
            # log w = -log(a + (1 - a) exp(mu.z - |mu|^2 / 2))
            e = dot - 0.5 * mu_norm2
            logw.append(-np.logaddexp(math.log(self.a), math.log(1 - self.a) + e))
            cnt, _ = scorer.counts_and_margins(z)
            counts.append(cnt)
        logw = np.concatenate(logw)
        counts = np.concatenate(counts)
        return {"logw": logw, "counts": counts, "mu_norm": math.sqrt(mu_norm2), "temperature": T,
                "evaluations": scorer.evaluations}

    @staticmethod
    def estimate(logw, counts, k):
        """Estimate, standard error, ESS and Pareto k-hat for P(count <= k)."""
        ind = counts <= k
        w = np.exp(logw)
        f = w * ind
        N = f.size
        p = float(f.mean())
        se = float(f.std(ddof=1) / math.sqrt(N)) if N > 1 else float("nan")
        ess = float(f.sum() ** 2 / np.sum(f * f)) if np.any(f > 0) else 0.0
        khat = float("nan")
        if np.count_nonzero(ind) >= 20:
            import arviz as az

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, khat = az.psislw(logw[ind].copy())
            khat = float(np.asarray(khat))
        return p, se, ess, khat, int(np.count_nonzero(ind))


def soft_count_gradient(scorer, latent, z, k, T):
    """``g(z) = soft count(z) - (k + 1/2)`` and its gradient in the latent space, for one chip ``z``
    (a block list with chip axis of length 1).  The soft count is the sum over evaluation samples of
    ``sigmoid(margin / T)``; gradients flow through the network's backward pass and the mapping
    (programming blocks only: the other blocks get zero gradient).  Counts one chip evaluation."""
    sim = scorer.sim
    W = latent.weights(z)
    logits, cache = sim.network.forward(scorer.x, weights=W, keep=True, dtype=np.float64)
    mg, dmg = margin(logits, scorer.y, grad=True)
    mg = mg[0]
    sig = 1.0 / (1.0 + np.exp(-mg / T))
    g = float(sig.sum() - (k + 0.5))
    grad_logits = dmg[0] * (sig * (1 - sig) / T)[:, None]       # d soft count / d logits
    gw = sim.network.backward(cache, grad_logits[None], input_grad=False).weights
    scorer.evaluations += 1
    grads = []
    for (kind, li, shape), b in zip(latent.blocks, z):
        if kind != "prog":
            grads.append(np.zeros_like(b, dtype=np.float64))
            continue
        m = sim.maps[li]
        dg = m.grad_conductance(gw[li].astype(np.float64))          # (1, r, slices, signs, K, N)
        scale = latent._par[li].get("scale", 1.0)
        grads.append(np.asarray(dg, dtype=np.float64) * np.asarray(scale, dtype=np.float64))
    return g, grads
