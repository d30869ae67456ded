"""The interface every tail estimator implements: the problem it is given (:class:`TailProblem`),
what it returns (:class:`EstimatorRun`) and the estimator itself (:class:`TailEstimator`).

A chip is a standard-normal latent vector (:class:`~reliability.cim.latent.LatentChips`); an estimator
draws chips, scores them with the problem's scorer (which counts every chip it evaluates) and
estimates, for each event ``n_correct <= count_thresholds[i]``, its probability with a standard
error, a 95 % interval and a verdict; and, for each tail probability in ``quantiles``, the accuracy
at that probability.  :func:`~reliability.sampling.estimate_tail` builds the problem, runs the
estimator and adds the wall time and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from reliability.sampling.checkpoint import fingerprint
from reliability.sampling.results import QuantileEstimate, TailEstimate

__all__ = ["ChipScoring", "EstimatorRun", "TailEstimator", "TailProblem"]


@runtime_checkable
class ChipScoring(Protocol):
    """Batched chip scoring (:class:`~reliability.sampling.scoring.ChipScorer`, or its Dask twin).

    Chips are given as a list of latent blocks, each with the chip on its first axis
    (:meth:`LatentChips.draw`, :meth:`LatentChips.draw_chip`).
    """

    #: chips evaluated so far
    evaluations: int

    def counts_and_margins(self, z: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(n_correct, mean margin)`` of each chip in ``z``."""

    def score(self, z: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(score, n_correct)`` of each chip: the count plus a tie-breaker in (0, 1)."""


@dataclass(frozen=True)
class TailProblem:
    """Everything a tail estimator needs.

    Attributes
    ----------
    scorer : ChipScoring
        Batched chip scoring with an evaluation counter (``scorer.evaluations``).
    latent : LatentChips
        The chips' latent Gaussian space: ``draw(rng, S)``, ``draw_chip(seed, i)``, ``draw_chips(seed, chips)``,
        ``dim``.
    below : tuple of float
        The accuracy thresholds asked for, one per event.
    count_thresholds : tuple of int
        Event ``i`` is ``n_correct <= count_thresholds[i]`` (``floor(below[i] * n_samples)``).
    quantiles : tuple of float
        Tail probabilities ``k`` whose accuracy is asked for.
    n_samples : int
        Evaluation samples per chip (accuracy = n_correct / n_samples).
    method : str
        The method name the run was asked under (part of a checkpoint's fingerprint only).
    """

    scorer: Any
    latent: Any
    below: tuple[float, ...]
    count_thresholds: tuple[int, ...]
    quantiles: tuple[float, ...] = ()
    n_samples: int = 0
    method: str = ""

    @property
    def dim(self) -> int:
        """Dimension of the latent space."""
        return int(self.latent.dim)

    @property
    def quantile_min(self) -> float | None:
        """The smallest tail probability asked for (``None``: no quantile asked for)."""
        return min(self.quantiles) if self.quantiles else None

    def fingerprint(self, estimator, *, budget: int, seed: int, method: str | None = None) -> str:
        """The checkpoint fingerprint of a run of ``estimator`` on this problem (``method``: the name
        recorded, by default :attr:`method`)."""
        sc = getattr(self.scorer, "local", self.scorer)
        return fingerprint(sc.sim, sc.x, sc.y, list(self.below), list(self.quantiles), budget, seed,
                           self.method if method is None else method, estimator)


@dataclass(frozen=True)
class EstimatorRun:
    """What an estimator returns.

    Attributes
    ----------
    estimates : tuple of TailEstimate
        One per event of the problem, in its order: probability, standard error, 95 % interval,
        evaluations, ``reliable`` and the reason when not.
    quantiles : tuple of QuantileEstimate
        One per quantile of the problem, in its order.
    evaluations : int
        Chips evaluated.
    method : str
        What ran (e.g. ``"subset-simulation"``).
    complete : bool
        False when the run was interrupted.
    diagnostics : dict
        Estimator-specific numbers (JSON-serialisable).
    """

    estimates: tuple[TailEstimate, ...]
    quantiles: tuple[QuantileEstimate, ...]
    evaluations: int
    method: str
    complete: bool = True
    diagnostics: dict = field(default_factory=dict)


@runtime_checkable
class TailEstimator(Protocol):
    """A tail estimator: settings in the constructor, the work in :meth:`run`."""

    #: short name of the estimator
    name: str

    def run(self, problem: TailProblem, *, budget: int, rng: Any,
            checkpoint: Any = None, progress: Callable[[int, int], None] | None = None) -> EstimatorRun:
        """Estimate the problem's events and quantiles with at most ``budget`` chip evaluations.

        Parameters
        ----------
        problem : TailProblem
        budget : int
            Most chip evaluations.
        rng : int or numpy.random.Generator
            The run's seed (:func:`reliability.streams.as_seed`); chips are keyed by it.
        checkpoint : path, optional
            A file to save progress to and resume from, for estimators that support it.
        progress : callable, optional
            Called as ``progress(evaluations_so_far, budget)``.
        """
