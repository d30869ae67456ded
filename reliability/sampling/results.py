"""Result objects of tail estimation (frozen; numbers, uncertainty, diagnostics, verdict)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl

from reliability._json import jsonable

__all__ = ["TailEstimate", "QuantileEstimate", "TailResult"]


@dataclass(frozen=True)
class TailEstimate:
    """P(accuracy <= below) with its standard error, 95 % interval and diagnostics."""

    below: float
    probability: float
    std_error: float
    ci95: tuple[float, float]
    method: str
    evaluations: int
    ess: float
    reliable: bool
    reason: str | None
    count_threshold: int = -1     # the event is n_correct <= count_threshold
    pareto_k: float | None = None  # importance-sampling weights only (None for splitting / plain MC)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = [float(self.ci95[0]), float(self.ci95[1])]
        return d


@dataclass(frozen=True)
class QuantileEstimate:
    """The k-th percentile accuracy: the accuracy a with P(accuracy <= a) reaching k."""

    k: float
    accuracy: float
    ci95: tuple[float, float]
    reliable: bool
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"k": self.k, "accuracy": self.accuracy, "ci95": [float(self.ci95[0]), float(self.ci95[1])],
                "reliable": self.reliable, "reason": self.reason}


@dataclass(frozen=True)
class TailResult:
    """Everything one tail-estimation run produced.

    ``seconds`` is the run's wall time; ``seed`` the integer seed of its streams (``rng`` of
    :func:`~reliability.sampling.estimate_tail`)."""

    estimates: tuple[TailEstimate, ...]
    quantiles: tuple[QuantileEstimate, ...]
    evaluations: int
    seconds: float
    method: str
    seed: int
    n_samples: int
    complete: bool = True
    diagnostics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The documented JSON form (``reliability tail --json``)."""
        return {"estimates": [e.to_dict() for e in self.estimates], "quantiles": [q.to_dict() for q in self.quantiles],
                "evaluations": int(self.evaluations), "seconds": float(self.seconds), "method": self.method,
                "seed": self.seed, "n_samples": self.n_samples, "complete": self.complete,
                "diagnostics": jsonable(self.diagnostics)}

    def to_polars(self) -> pl.DataFrame:
        """One row per estimate and per quantile, told apart by the ``kind`` column
        (``"probability"`` or ``"quantile"``).

        Probability rows fill ``below``, ``probability``, ``std_error``, ``count_threshold``, ``method``,
        ``evaluations``, ``ess`` and ``pareto_k``; quantile rows fill ``k`` and ``accuracy``; both fill
        ``ci95_low``, ``ci95_high`` (of the probability, or of the accuracy), ``reliable`` and ``reason``.
        Columns a row's kind does not have are null.
        """
        rows = [{"kind": "probability", **{k: v for k, v in e.to_dict().items() if k != "ci95"},
                 "ci95_low": e.ci95[0], "ci95_high": e.ci95[1]} for e in self.estimates]
        rows += [{"kind": "quantile", "k": q.k, "accuracy": q.accuracy, "ci95_low": q.ci95[0], "ci95_high": q.ci95[1],
                  "reliable": q.reliable, "reason": q.reason} for q in self.quantiles]
        return pl.DataFrame(rows, schema=_POLARS_SCHEMA)


_POLARS_SCHEMA = {"kind": pl.String, "below": pl.Float64, "probability": pl.Float64, "std_error": pl.Float64,
                  "k": pl.Float64, "accuracy": pl.Float64, "ci95_low": pl.Float64, "ci95_high": pl.Float64,
                  "method": pl.String, "evaluations": pl.Int64, "ess": pl.Float64, "reliable": pl.Boolean,
                  "reason": pl.String, "count_threshold": pl.Int64, "pareto_k": pl.Float64}
