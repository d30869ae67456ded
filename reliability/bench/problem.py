"""What an estimator is given in the suite: a :class:`~reliability.sampling.TailProblem` whose chip
evaluations all pass one counter that refuses to go past the budget.

The problem hides the simulator: an estimator sees the latent space (``dim``, ``draw``, the block
layout), the events and a scorer, and every chip it scores, and every design-point gradient (one
evaluation each), is counted by :class:`CountingScorer` before it runs.  A call that would exceed
the budget raises :class:`BudgetExceeded`; the run is recorded as a failure.  The evaluations a
run reports are compared with the counter's, never used in its place.

Two ways to use the problem:

- the block form of the toolkit's own estimators (``problem.scorer.score(z)``,
  ``problem.latent.draw(rng, S)``: lists of arrays, one per latent block, chip axis first);
- flat arrays: ``problem.draw(rng, S)`` gives ``S`` standard-normal chips as an ``(S, dim)``
  array and ``problem.evaluate(Z)`` their ``(n_correct, mean margin)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reliability.errors import ReliabilityError
from reliability.sampling.protocol import TailProblem

__all__ = ["BudgetExceeded", "CountingScorer", "LatentView", "BenchProblem"]


class BudgetExceeded(ReliabilityError):
    """An estimator asked for more chip evaluations than its budget."""


class CountingScorer:
    """The scorer an estimator gets: counts every evaluation before it runs and refuses past
    ``budget``.  ``evaluations`` and ``gradients`` are read-only."""

    def __init__(self, scorer, budget: int):
        self._scorer = scorer
        self._budget = int(budget)
        self._evaluations = 0
        self._gradients = 0
        self._refused = 0

    evaluations = property(lambda self: self._evaluations, doc="Chips evaluated so far (gradients included).")
    gradients = property(lambda self: self._gradients, doc="Design-point gradients so far (one evaluation each).")
    budget = property(lambda self: self._budget, doc="Most evaluations allowed.")
    refused = property(lambda self: self._refused, doc="Calls refused for the budget (a run with any is a failure, "
                                                       "even if the estimator caught the error).")
    n = property(lambda self: self._scorer.n, doc="Evaluation samples per chip.")
    analog_layers = property(lambda self: self._scorer.analog_layers, doc="Analog layers of the network.")
    tau = property(lambda self: self._scorer.tau, lambda self, v: setattr(self._scorer, "tau", v))
    centre = property(lambda self: self._scorer.centre, lambda self, v: setattr(self._scorer, "centre", v))

    def _charge(self, k: int) -> None:
        if self._evaluations + k > self._budget:
            self._refused += 1
            raise BudgetExceeded(f"the estimator asked for {k} more chip evaluation(s) after {self._evaluations} of "
                                 f"its budget of {self._budget}.")
        self._evaluations += k

    def counts_and_margins(self, z):
        """``(n_correct, mean margin)`` of each chip of the block list ``z``."""
        self._charge(int(z[0].shape[0]))
        return self._scorer.counts_and_margins(z)

    def sample_margins(self, z):
        """``(n_correct, margins (S, n))``: every evaluation sample's margin."""
        self._charge(int(z[0].shape[0]))
        return self._scorer.sample_margins(z)

    def score(self, z):
        """``(score, n_correct)``: the count plus a tie-breaker in (0, 1)."""
        counts, mm = self.counts_and_margins(z)
        return self._scorer.combine(counts, mm), counts

    def gradient(self, z, k: int, T: float):
        """Soft-count distance to ``n_correct <= k`` and its gradient at one chip; one evaluation."""
        self._charge(1)
        self._gradients += 1
        return self._scorer.gradient(z, k, T)

    def set_scale(self, margins) -> None:
        self._scorer.set_scale(margins)

    def combine(self, counts, mm):
        return self._scorer.combine(counts, mm)


class LatentView:
    """The chips' latent space without the simulator behind it: ``dim``, ``blocks``, ``dtype``,
    ``draw``, ``draw_chip``, ``draw_chips``, ``stack``, ``take`` and ``pcn`` of
    :class:`~reliability.cim.latent.LatentChips`."""

    _PUBLIC = ("dim", "blocks", "dtype", "draw", "draw_chip", "draw_chips", "stack", "take", "pcn")

    def __init__(self, latent):
        object.__setattr__(self, "_latent", latent)

    def __getattr__(self, name):
        if name in LatentView._PUBLIC:
            return getattr(self._latent, name)
        raise AttributeError(f"the benchmark problem's latent space has no {name!r}; it offers "
                             f"{', '.join(LatentView._PUBLIC)} (chips are evaluated through problem.scorer or "
                             f"problem.evaluate, which count them).")

    def __setattr__(self, name, value):
        raise AttributeError("the benchmark problem's latent space is read-only.")


@dataclass(frozen=True)
class BenchProblem(TailProblem):
    """A :class:`~reliability.sampling.TailProblem` with a :class:`CountingScorer`, a
    :class:`LatentView` and flat-array access (module docstring)."""

    key: str = ""

    @property
    def budget(self) -> int:
        """Most chip evaluations of the run."""
        return self.scorer.budget

    def fingerprint(self, estimator, *, budget: int, seed: int, method: str | None = None) -> str:
        """Runs in the suite keep no checkpoint: the fingerprint names the case, estimator and seed."""
        return f"{self.key}:{getattr(estimator, 'name', type(estimator).__name__)}:{budget}:{seed}:{method}"

    def _blocks(self, Z) -> list[np.ndarray]:
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.dim or not np.issubdtype(Z.dtype, np.number):
            raise ReliabilityError(f"chips must be a numeric (S, {self.dim}) array (one latent vector per row); got "
                                   f"shape {Z.shape} of {Z.dtype}.")
        if not np.all(np.isfinite(Z)):
            raise ReliabilityError("chips contain NaN or infinite coordinates; latent vectors must be finite.")
        out, a = [], 0
        for _, _, shape in self.latent.blocks:
            size = int(np.prod(shape))
            out.append(np.ascontiguousarray(Z[:, a:a + size].reshape((Z.shape[0],) + tuple(shape)),
                                            dtype=self.latent.dtype))
            a += size
        return out

    def draw(self, rng: np.random.Generator, S: int) -> np.ndarray:
        """``S`` chips from the nominal law: an ``(S, dim)`` standard-normal array (costs nothing)."""
        return rng.standard_normal((int(S), self.dim))

    def evaluate(self, Z) -> tuple[np.ndarray, np.ndarray]:
        """``(n_correct, mean margin)`` of the chips given as the rows of ``Z``, ``(S, dim)``; ``S``
        evaluations.  The event ``i`` holds for a chip when ``n_correct <= count_thresholds[i]``; the
        mean margin is a continuous companion (lower is worse)."""
        return self.scorer.counts_and_margins(self._blocks(Z))
