"""Chips on a Dask cluster: the same numbers as the serial scorer and simulator, spread over workers.

A chip's score depends only on its latent vector (and level-0 chips only on ``(seed, index)``), so
splitting a batch into chunks evaluated on different workers changes nothing in the result.
``make_client(workers=N)`` starts a local cluster (one single-threaded process per worker);
``make_client(scheduler=ADDRESS)`` joins an existing one.  :func:`simulate_on_cluster` is
:meth:`ChipSimulator.evaluate <reliability.cim.ChipSimulator.evaluate>` over workers, each task a
whole number of the serial run's chunks, so every chip sees the same products as in the serial run.
Dask is optional (the ``[dask]`` extra) and imported only here, when a client is made.  The
simulator, latent map and evaluation data are sent to every worker once.
"""

from __future__ import annotations

import numpy as np

from reliability.errors import MissingDependencyError, ReliabilityError

__all__ = ["DaskScorer", "blas_threads", "make_client", "simulate_on_cluster"]


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


def blas_threads() -> int:
    """This process's BLAS thread count.  Workers run their products with the driver's count:
    OpenBLAS splits a product differently with another count and rounds the logits differently in
    their last bits (measured: losses 1e-8 apart), so a chip would not be the serial run's chip."""
    from threadpoolctl import threadpool_info

    counts = [int(i.get("num_threads", 1)) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else 1


def _score_chunk(payload, z):
    from threadpoolctl import threadpool_limits

    from reliability.sampling.scoring import ChipScorer

    sim, latent, x, y, threads = payload
    sc = ChipScorer.__new__(ChipScorer)
    sc.sim, sc.latent, sc.x, sc.y = sim, latent, x, y
    sc.n, sc.evaluations, sc.tau, sc.centre = int(len(y)), 0, 1.0, 0.0
    sc.chunk = max(1, z[0].shape[0])
    with threadpool_limits(threads, user_api="blas"):
        return sc.counts_and_margins(z)


def _score_indices(payload, seed, idx):
    latent = payload[1]
    z = latent.draw_chips(seed, idx)
    return _score_chunk(payload, z)


class DaskScorer:
    """Drop-in for :class:`~reliability.sampling.scoring.ChipScorer` that evaluates on a cluster."""

    def __init__(self, local_scorer, client, chunk: int = 64):
        self.local = local_scorer
        self.client = client
        self.chunk = int(chunk)
        self._payload = client.scatter((local_scorer.sim, local_scorer.latent, local_scorer.x, local_scorer.y,
                                        blas_threads()), broadcast=True)

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


def _evaluate_part(payload, chips, seed, chunk):
    from threadpoolctl import threadpool_limits

    sim, x, y, threads = payload
    before = dict(sim.periphery.saturated)
    with threadpool_limits(threads, user_api="blas"):
        res = sim.evaluate(x, y, chips=chips, rng=seed, chunk_size=chunk)
    return res, {k: sim.periphery.saturated[k] - before[k] for k in before}


def simulate_on_cluster(sim, x, y, n_chips: int, client, *, rng=0, chunk_size: int | None = None,
                        chunks_per_task: int = 1, progress=None):
    """:meth:`ChipSimulator.evaluate <reliability.cim.ChipSimulator.evaluate>` of chips
    ``0 .. n_chips - 1`` on ``client``'s workers: the same
    :class:`~reliability.cim.SimulationResult` as the serial call with the same ``chunk_size``
    (chip ``i`` depends only on the seed and ``i``, and each task evaluates whole chunks of the serial
    run).  The DAC/ADC saturation counts of the workers are summed into the driver's simulator.
    Ctrl-C cancels the tasks left and returns the chips finished, in order, flagged ``complete=False``."""
    import time

    from distributed import as_completed

    from reliability.cim import SimulationResult
    from reliability.streams import as_seed

    seed = as_seed(rng)
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ReliabilityError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; give one label per sample.")
    if int(n_chips) < 1:
        raise ReliabilityError(f"n_chips must be a positive integer; got {n_chips!r}.")
    chips = np.arange(int(n_chips))
    sim.ensure_calibrated(x)
    t0 = time.perf_counter()
    S = int(chunk_size or sim.chips_per_chunk(x, len(chips)))
    T = S * max(1, int(chunks_per_task))
    payload = client.scatter((sim, x, y, blas_threads()), broadcast=True)
    futures = {client.submit(_evaluate_part, payload, chips[a:a + T], seed, S, pure=False): a
               for a in range(0, len(chips), T)}
    got, done, complete = {}, 0, True
    try:
        for fut in as_completed(list(futures)):
            res, sat = fut.result()
            got[futures[fut]] = res
            for k, v in sat.items():
                sim.periphery.saturated[k] += v
            done += res.chip.size
            if progress is not None:
                progress(done, len(chips))
    except KeyboardInterrupt:
        complete = False
        client.cancel(list(futures))
    parts = [got[a] for a in sorted(got)]
    if not complete:     # keep the unbroken prefix: chips 0 .. m-1, as a serial run interrupted there
        keep, nxt = [], 0
        for a in sorted(got):
            if a != nxt:
                break
            keep.append(got[a])
            nxt = a + got[a].chip.size
        parts = keep
    cat = lambda f, dt: np.concatenate([getattr(r, f) for r in parts]).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return SimulationResult(cat("chip", np.int64), cat("accuracy", np.float64), cat("loss", np.float64),
                            cat("n_correct", np.int64), int(len(y)), int(seed), time.perf_counter() - t0, S, complete,
                            sim.saturation_diagnostics(), "" if complete else "interrupted: partial result")
