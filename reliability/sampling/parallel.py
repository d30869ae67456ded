"""Scoring chips on a Dask cluster: the same numbers as the serial scorer, spread over workers.

A chip's score depends only on its latent vector (and level-0 chips only on ``(seed, index)``), so
splitting a batch into chunks evaluated on different workers changes nothing in the result.
``make_client(workers=N)`` starts a local cluster (one single-threaded process per worker);
``make_client(scheduler=ADDRESS)`` joins an existing one.  Dask is optional (the ``[dask]`` extra) and
imported only here, when a client is made.  The simulator, latent map and evaluation data are sent to every
worker once.
"""

from __future__ import annotations

import numpy as np

from reliability.errors import MissingDependencyError, ReliabilityError

__all__ = ["DaskScorer", "make_client"]


def make_client(workers: int | None = None, scheduler: str | None = None):
    """A ``distributed.Client``: a local cluster of ``workers`` processes, or ``scheduler``'s."""
    if not scheduler and (not workers or workers < 1):
        raise ReliabilityError(f"workers={workers!r}: must be a positive integer (or give scheduler=ADDRESS).")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MissingDependencyError("Dask is optional and not installed: pip install 'nvcim-reliability[dask]' "
                                     "to evaluate chips on a cluster.") from None
    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def _score_chunk(payload, z):
    from reliability.sampling.scoring import ChipScorer

    sim, latent, x, y = payload
    sc = ChipScorer.__new__(ChipScorer)
    sc.sim, sc.latent, sc.x, sc.y = sim, latent, x, y
    sc.n, sc.evaluations, sc.tau, sc.centre = int(len(y)), 0, 1.0, 0.0
    sc.chunk = max(1, z[0].shape[0])
    return sc.counts_and_margins(z)


def _score_indices(payload, seed, idx):
    latent = payload[1]
    z = latent.stack([latent.draw_chip(seed, int(i)) for i in idx])
    return _score_chunk(payload, z)


class DaskScorer:
    """Drop-in for :class:`~reliability.sampling.scoring.ChipScorer` that evaluates on a cluster."""

    def __init__(self, local_scorer, client, chunk: int = 64):
        self.local = local_scorer
        self.client = client
        self.chunk = int(chunk)
        self._payload = client.scatter((local_scorer.sim, local_scorer.latent, local_scorer.x, local_scorer.y),
                                       broadcast=True)

    # the tie-breaker's scale lives on the driver
    tau = property(lambda self: self.local.tau, lambda self, v: setattr(self.local, "tau", v))
    centre = property(lambda self: self.local.centre, lambda self, v: setattr(self.local, "centre", v))
    evaluations = property(lambda self: self.local.evaluations,
                           lambda self, v: setattr(self.local, "evaluations", v))

    def set_scale(self, margins):
        self.local.set_scale(margins)

    # design-point gradients and per-sample margins run on the driver, counted there
    def gradient(self, z, k, T):
        return self.local.gradient(z, k, T)

    def sample_margins(self, z):
        return self.local.sample_margins(z)

    analog_layers = property(lambda self: self.local.analog_layers)

    def combine(self, counts, mm):
        return self.local.combine(counts, mm)

    def _gather(self, futures):
        parts = self.client.gather(futures)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def counts_and_margins(self, z):
        S = z[0].shape[0]
        futs = [self.client.submit(_score_chunk, self._payload, [b[s:s + self.chunk] for b in z], pure=False)
                for s in range(0, S, self.chunk)]
        out = self._gather(futs)
        self.local.evaluations += S
        return out

    def counts_for_indices(self, seed, idx):
        idx = list(idx)
        futs = [self.client.submit(_score_indices, self._payload, seed, idx[s:s + self.chunk], pure=False)
                for s in range(0, len(idx), self.chunk)]
        out = self._gather(futs)
        self.local.evaluations += len(idx)
        return out

    def score(self, z):
        counts, mm = self.counts_and_margins(z)
        return self.combine(counts, mm), counts
