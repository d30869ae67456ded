"""The worst-case search's results: frozen dataclasses with their JSON (``to_dict``) and table
(``to_polars``) forms.

:class:`WorstCaseResult` holds the accuracy-versus-bound curve (one :class:`BoundResult` per
bound), the minimal breaking bound (:class:`MinimalBound`) and the sensitivity ranking
(:class:`Sensitivity`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from reliability._json import jsonable
from reliability.errors import ReliabilityError

__all__ = ["BoundResult", "MinimalBound", "Sensitivity", "WorstCaseResult"]


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
    """Which layers and devices carry a worst-case deviation (ranking: see :mod:`reliability.worstcase`).

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
    """Worst-case accuracy versus bound, the minimal breaking deviation and the sensitivity ranking.

    ``seed`` is the integer seed the search's random streams (restarts, random baseline) came from:
    passing it back as ``rng`` repeats the search exactly.
    """

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
