"""Tail accuracy: P(accuracy <= a) for several a, and the k-th percentile accuracy, with honest
uncertainty, in the chips' latent Gaussian space: by default the hybrid of importance sampling along
the failure modes' design points and subset simulation (:mod:`reliability.sampling.hybrid`); subset
simulation alone, plain Monte Carlo and one mean shift on request.

``estimate_tail`` is the Python twin of ``reliability tail`` and a thin driver: it checks the
arguments, builds the :class:`~reliability.sampling.protocol.TailProblem`, picks the estimator
(:data:`ESTIMATORS`), runs it and turns its run into a :class:`TailResult`.  Every estimate carries its
standard error, 95 % interval, effective sample size and a verdict: an estimate whose diagnostics
fail is returned with ``reliable = False`` and the reason, never as a confident number.
"""

from __future__ import annotations

import math
import time

import numpy as np

from reliability import streams
from reliability.cim.latent import LatentChips
from reliability.cim.simulate import ChipSimulator
from reliability.errors import ReliabilityError
from reliability.sampling.hybrid import HybridSampling
from reliability.sampling.importance import MeanShiftImportanceSampling
from reliability.sampling.montecarlo import PlainMonteCarlo
from reliability.sampling.protocol import TailEstimator, TailProblem
from reliability.sampling.results import TailResult
from reliability.sampling.scoring import ChipScorer
from reliability.sampling.subset import SubsetSimulation

__all__ = ["estimate_tail", "ESTIMATORS", "METHODS"]

#: the estimators by method name (each a :class:`~reliability.sampling.protocol.TailEstimator`
#: class, built with its default settings); ``"auto"`` is ``"hybrid"``
ESTIMATORS: dict[str, type] = {"hybrid": HybridSampling, "subset": SubsetSimulation, "mc": PlainMonteCarlo,
                               "is": MeanShiftImportanceSampling}
METHODS = ("auto", *ESTIMATORS)


def _check(below, quantiles, budget):
    below = [float(a) for a in (below or [])]
    quantiles = [float(k) for k in (quantiles or [])]
    for a in below:
        if not (0.0 <= a < 1.0):
            raise ReliabilityError(f"below={a}: an accuracy threshold must be in [0, 1).")
    for k in quantiles:
        if not (0.0 < k < 0.5):
            raise ReliabilityError(f"quantiles={k}: the tail probability k must be in (0, 0.5).")
    if not below and not quantiles:
        raise ReliabilityError("nothing to estimate: give at least one accuracy threshold (below) or tail "
                               "probability (quantiles).")
    if int(budget) < 100:
        raise ReliabilityError(f"budget={budget}: at least 100 chip evaluations are needed.")
    return below, quantiles


def _pick(method: str, estimator):
    """The estimator to run: ``estimator`` when given, else the default one of ``method``."""
    if method not in METHODS:
        raise ReliabilityError(f"method={method!r}: must be one of {METHODS}.")
    if estimator is not None:
        if not isinstance(estimator, TailEstimator):
            raise ReliabilityError(f"estimator={estimator!r}: must be a TailEstimator (a `name` and a "
                                   "`run(problem, *, budget, rng, checkpoint, progress)` method).")
        return estimator
    return ESTIMATORS["hybrid" if method == "auto" else method]()


def estimate_tail(network, x, y, variation, *, below=(), quantiles=(), budget: int = 20000, rng=0,
                  method: str = "auto", estimator=None, simulator: ChipSimulator | None = None,
                  checkpoint=None, progress=None, client=None, backend: str = "numpy") -> TailResult:
    """Estimate P(accuracy <= a) for each ``a`` in ``below`` and the accuracy at each tail
    probability in ``quantiles``, using at most ``budget`` chip evaluations.

    Parameters
    ----------
    network, x, y, variation :
        The network, the evaluation data and the chip specification (or variation string).
    below : sequence of float
        Accuracy thresholds in [0, 1).
    quantiles : sequence of float
        Tail probabilities in (0, 0.5).
    budget : int
        Most chip evaluations (at least 100).
    rng : int or numpy.random.Generator
        The seed of the run's keyed streams (:mod:`reliability.streams`): an int is used as is, a
        Generator gives one draw; :attr:`TailResult.seed` records the int used.
    method : str
        "auto"/"hybrid" (importance sampling along the failure modes' design points plus subset
        simulation for the rest, :mod:`reliability.sampling.hybrid`), "subset" (subset simulation
        alone; it reduces to plain Monte Carlo when the events are common enough to be seen at level
        0), "mc" (plain Monte Carlo, chips keyed by index) or "is" (one mean shift, for comparison).
    estimator : TailEstimator, optional
        Overrides the method's estimator (e.g. a :class:`HybridSampling` or
        :class:`SubsetSimulation` with other settings, or one of your own).
    simulator : ChipSimulator, optional
        A simulator to reuse (default: built from ``network`` and ``variation``).
    checkpoint : path, optional
        File to save progress to and resume from (hybrid and subset simulation).
    progress : callable, optional
        ``progress(evaluations, budget)``.
    client : distributed.Client, optional
        Evaluate chips on a Dask cluster (:func:`reliability.sampling.parallel.make_client`).
    backend : str
        Where the chips' products run (:class:`~reliability.cim.ChipSimulator`'s ``backend``:
        ``"numpy"``, or ``"torch"``/``"torch:cpu"``/``"torch:cuda"`` with the optional PyTorch).
        Ignored when ``simulator`` is given (it has its own).

    Returns
    -------
    TailResult
    """
    below, quantiles = _check(below, quantiles, budget)
    est = _pick(method, estimator)
    seed = streams.as_seed(rng)
    t0 = time.perf_counter()
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64)
    n = int(y.size)
    sim = simulator or ChipSimulator(network, variation, backend=backend)
    latent = LatentChips(sim)
    scorer = ChipScorer(sim, latent, x, y)
    if client is not None:
        from reliability.sampling.parallel import DaskScorer

        scorer = DaskScorer(scorer, client)
    problem = TailProblem(scorer, latent, tuple(below), tuple(int(math.floor(a * n + 1e-9)) for a in below),
                          tuple(quantiles), n, method)
    run = est.run(problem, budget=int(budget), rng=seed, checkpoint=checkpoint, progress=progress)
    return TailResult(run.estimates, run.quantiles, run.evaluations, time.perf_counter() - t0, run.method, seed, n,
                      run.complete, run.diagnostics)
