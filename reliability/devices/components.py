"""The composable parts of a device model: programming variation, drift, read noise, stuck-at
faults and chip-to-chip gain.

Every part is a frozen dataclass that samples vectorized over arrays of targets with an explicit
``numpy.random.Generator`` and serializes to JSON.  Units are declared in ``UNITS``: conductances
in the model's unit (microsiemens for conductance models), times in seconds, the rest
dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from reliability.devices.families import get_family
from reliability.devices.state import (
    Constant, StateFunction, doc_flag, doc_number, doc_numbers, doc_text, state_function_from_dict, strict_keys,
)
from reliability.errors import ModelSpecError

__all__ = [
    "ProgrammingVariation", "EmpiricalVariation", "Drift", "ReadNoise", "StuckAt", "ChipGain",
    "programming_from_dict",
]


def _float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ModelSpecError(f"{name} must be a number; got {value!r}.") from None


def _prob(name: str, value: float) -> float:
    v = _float(name, value)
    if not (0.0 <= v < 1.0):
        raise ModelSpecError(f"{name} must be a probability in [0, 1); got {value!r}.")
    return v


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    v = _float(name, value)
    ok = v >= 0 if allow_zero else v > 0
    if not (np.isfinite(v) and ok):
        raise ModelSpecError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite; got {value!r}.")
    return v


@dataclass(frozen=True)
class ProgrammingVariation:
    """Device-to-device (and cycle-to-cycle) programming variation around the target.

    ``family`` additive: ``g0 = target + loc(target) + scale(target) * z``;
    ``family`` lognormal: ``g0 = target * exp(loc(target) + scale(target) * z)``,
    with ``z`` drawn from the standardized family with the given ``shape`` parameters.
    """

    family: str = "normal"
    loc: StateFunction = field(default_factory=lambda: Constant(0.0))
    scale: StateFunction = field(default_factory=lambda: Constant(1.0))
    shape: dict[str, float] = field(default_factory=dict)
    UNITS: ClassVar[dict[str, str]] = {"loc": "model unit (log-units for lognormal)", "scale": "model unit (log-units for lognormal)"}

    def __post_init__(self) -> None:
        fam = get_family(self.family)
        fam.check_shape(self.shape)
        object.__setattr__(self, "shape", {k: float(v) for k, v in self.shape.items()})

    @property
    def family_obj(self):
        return get_family(self.family)

    def shape_values(self) -> tuple[float, ...]:
        return self.family_obj.check_shape(self.shape)

    def standardize(self, x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(z, log_jacobian)`` for measured ``x`` at ``target`` (x > 0 needed for lognormal)."""
        x = np.asarray(x, dtype=float)
        target = np.asarray(target, dtype=float)
        scale = self.scale(target)
        if self.family_obj.transform == "log":
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.log(x / target)
            return (y - self.loc(target)) / scale, -np.log(scale) - np.log(x)
        return (x - target - self.loc(target)) / scale, -np.log(scale)

    def logpdf(self, x, target):
        z, lj = self.standardize(x, target)
        return self.family_obj.logpdf(z, *self.shape_values()) + lj

    def cdf(self, x, target):
        z, _ = self.standardize(x, target)
        return self.family_obj.cdf(z, *self.shape_values())

    def ppf(self, u, target):
        fam = self.family_obj
        target = np.asarray(target, dtype=float)
        z = fam.ppf(u, *self.shape_values())
        if fam.transform == "log":
            return target * np.exp(self.loc(target) + self.scale(target) * z)
        return target + self.loc(target) + self.scale(target) * z

    def sample(self, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        target = np.asarray(target, dtype=float)
        fam = self.family_obj
        z = fam.rvs(rng, target.shape, *self.shape_values())
        if fam.transform == "log":
            return target * np.exp(self.loc(target) + self.scale(target) * z)
        return target + self.loc(target) + self.scale(target) * z

    def std(self, target) -> np.ndarray:
        """Standard deviation of the programmed conductance at ``target`` (model unit)."""
        target = np.asarray(target, dtype=float)
        fam = self.family_obj
        s = self.scale(target)
        if fam.transform == "log":
            loc = self.loc(target)
            return target * np.sqrt((np.exp(s * s) - 1) * np.exp(2 * loc + s * s))
        return s * np.sqrt(fam.var(*self.shape_values()))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "parametric", "family": self.family, "loc": self.loc.to_dict(),
                "scale": self.scale.to_dict(), "shape": dict(self.shape)}


@dataclass(frozen=True)
class EmpiricalVariation:
    """Lookup-table programming variation: quantiles of ``g0 - target`` measured at each level.

    Sampling draws ``u ~ U(0, 1)``, reads the deviation quantile at ``u`` for the two levels that
    bracket the target (piecewise-linear in ``u``) and interpolates linearly in the target; targets
    beyond the outermost levels use the nearest level.  Like CrossSim's lookup tables it cannot
    produce deviations beyond those measured: tails are bounded by the data.
    """

    levels: tuple[float, ...]
    probs: tuple[float, ...]
    quantiles: tuple[tuple[float, ...], ...]
    family: ClassVar[str] = "empirical"

    def __post_init__(self) -> None:
        try:
            lv = np.asarray(self.levels, dtype=float)
            pr = np.asarray(self.probs, dtype=float)
            q = np.asarray(self.quantiles, dtype=float)
        except (TypeError, ValueError, OverflowError):
            raise ModelSpecError("EmpiricalVariation.levels, .probs and .quantiles must be numbers (quantiles: one "
                                 "list per level, one number per prob).") from None
        if lv.ndim != 1 or lv.size == 0 or not np.all(np.isfinite(lv)) or np.any(np.diff(lv) <= 0):
            raise ModelSpecError(f"EmpiricalVariation.levels must be strictly increasing and non-empty; got {self.levels!r}.")
        if pr.ndim != 1 or pr.size < 2 or pr[0] != 0.0 or pr[-1] != 1.0 or not np.all(np.diff(pr) > 0):
            raise ModelSpecError("EmpiricalVariation.probs must increase strictly from 0 to 1 (at least 2 entries).")
        if q.shape != (lv.size, pr.size) or not np.all(np.isfinite(q)) or np.any(np.diff(q, axis=1) < 0):
            raise ModelSpecError(
                f"EmpiricalVariation.quantiles must be finite, shape (levels, probs) = {(lv.size, pr.size)}, "
                f"non-decreasing along probs; got shape {q.shape}."
            )
        object.__setattr__(self, "levels", tuple(map(float, lv)))
        object.__setattr__(self, "probs", tuple(map(float, pr)))
        object.__setattr__(self, "quantiles", tuple(tuple(map(float, row)) for row in q))

    def _bracket(self, target):
        lv = np.asarray(self.levels)
        t = np.clip(np.asarray(target, dtype=float), lv[0], lv[-1])
        if lv.size == 1:
            zero = np.zeros(t.shape, dtype=int)
            return zero, zero, np.zeros(t.shape)
        hi = np.clip(np.searchsorted(lv, t, side="right"), 1, lv.size - 1)
        lo = hi - 1
        frac = (t - lv[lo]) / (lv[hi] - lv[lo])
        return lo, hi, frac

    def ppf(self, u, target):
        u = np.asarray(u, dtype=float)
        target = np.asarray(target, dtype=float)
        u, target = np.broadcast_arrays(u, target)
        q = np.asarray(self.quantiles)
        pr = np.asarray(self.probs)
        lo, hi, frac = self._bracket(target)
        j = np.clip(np.searchsorted(pr, u, side="right") - 1, 0, pr.size - 2)
        w = (u - pr[j]) / (pr[j + 1] - pr[j])
        dlo = q[lo, j] + w * (q[lo, j + 1] - q[lo, j])
        dhi = q[hi, j] + w * (q[hi, j + 1] - q[hi, j])
        return target + (1 - frac) * dlo + frac * dhi

    def sample(self, target, rng):
        target = np.asarray(target, dtype=float)
        return self.ppf(rng.random(target.shape), target)

    def cdf(self, x, target):
        """CDF by inverting the interpolated quantile function (bisection, vectorized)."""
        x, target = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(target, dtype=float))
        lo = np.zeros(x.shape)
        hi = np.ones(x.shape)
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            below = self.ppf(mid, target) < x
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def std(self, target):
        u = (np.arange(2000) + 0.5) / 2000
        t = np.asarray(target, dtype=float)
        vals = self.ppf(u[(...,) + (None,) * t.ndim], t)
        return vals.std(axis=0)

    def to_dict(self):
        return {"kind": "empirical", "levels": list(self.levels), "probs": list(self.probs),
                "quantiles": [list(r) for r in self.quantiles]}


def programming_from_dict(d: dict[str, Any]):
    if not isinstance(d, dict):
        raise ModelSpecError(f"'programming' must be an object; got {d!r}.")
    kind = d.get("kind", "parametric")
    if kind == "empirical":
        strict_keys(d, {"kind", "levels", "probs", "quantiles"}, "programming")
        missing = [k for k in ("levels", "probs", "quantiles") if k not in d]
        if missing:
            raise ModelSpecError(f"'programming' (empirical) needs the field {missing[0]!r}.")
        rows = d["quantiles"]
        if not isinstance(rows, list):
            raise ModelSpecError(f"programming.quantiles must be a list of lists of numbers (one per level); got "
                                 f"{rows!r}.")
        return EmpiricalVariation(doc_numbers(d["levels"], "programming.levels"),
                                  doc_numbers(d["probs"], "programming.probs"),
                                  tuple(doc_numbers(r, f"programming.quantiles[{i}]") for i, r in enumerate(rows)))
    if kind != "parametric":
        raise ModelSpecError(f"'programming.kind' must be 'parametric' or 'empirical'; got {kind!r}.")
    strict_keys(d, {"kind", "family", "loc", "scale", "shape"}, "programming")
    shape = d.get("shape", {})
    if not isinstance(shape, dict):
        raise ModelSpecError(f"programming.shape must be an object of shape parameters (e.g. {{\"nu\": 5}}); got "
                             f"{shape!r}.")
    return ProgrammingVariation(
        family=doc_text(d.get("family", "normal"), "programming.family"),
        loc=state_function_from_dict(d.get("loc", 0.0), "programming.loc"),
        scale=state_function_from_dict(d.get("scale", 1.0), "programming.scale"),
        shape={k: doc_number(v, f"programming.shape.{k}") for k, v in shape.items()},
    )


@dataclass(frozen=True)
class Drift:
    """Power-law conductance drift ``g(t) = g(t0) * (t / t0)^(-nu)`` for ``t > t0`` (no change before).

    ``nu`` is drawn once per device: ``nu = mean(target) + std(target) * z``, folded to ``|nu|``
    when ``fold`` is true (as in aihwkit's PCM model, so that no device drifts upward).
    """

    nu_mean: StateFunction = field(default_factory=lambda: Constant(0.05))
    nu_std: StateFunction = field(default_factory=lambda: Constant(0.0))
    t0_s: float = 20.0
    fold: bool = True
    UNITS: ClassVar[dict[str, str]] = {"nu_mean": "1", "nu_std": "1", "t0_s": "s"}

    def __post_init__(self) -> None:
        _positive("Drift.t0_s", self.t0_s)

    def draw_nu(self, target, rng):
        target = np.asarray(target, dtype=float)
        nu = self.nu_mean(target) + self.nu_std(target) * rng.standard_normal(target.shape)
        return np.abs(nu) if self.fold else nu

    def log_factor(self, time_s) -> np.ndarray:
        """``log(max(t, t0) / t0)``: the drift exponent's multiplier in log-conductance."""
        t = np.asarray(time_s, dtype=float)
        return np.log(np.maximum(t, self.t0_s) / self.t0_s)

    def apply(self, g0, nu, time_s):
        return g0 * np.exp(-nu * self.log_factor(time_s))

    def to_dict(self):
        return {"nu_mean": self.nu_mean.to_dict(), "nu_std": self.nu_std.to_dict(), "t0_s": float(self.t0_s),
                "fold": bool(self.fold)}

    @classmethod
    def from_dict(cls, d):
        strict_keys(d, {"nu_mean", "nu_std", "t0_s", "fold"}, "drift")
        return cls(state_function_from_dict(d.get("nu_mean", 0.0), "drift.nu_mean"),
                   state_function_from_dict(d.get("nu_std", 0.0), "drift.nu_std"),
                   doc_number(d.get("t0_s", 20.0), "drift.t0_s"), doc_flag(d.get("fold", True), "drift.fold"))


@dataclass(frozen=True)
class ReadNoise:
    """1/f-style read noise whose accumulated variance grows with log time.

    Each read adds ``|g| * q(target) * sqrt(log((t + t_read) / (2 t_read))) * z`` with a fresh
    ``z ~ N(0, 1)`` per read (zero for ``t <= t_read``); the form of aihwkit's PCM model (Nandakumar
    et al. 2019), ``t`` in seconds since programming.
    """

    q: StateFunction = field(default_factory=lambda: Constant(0.0))
    t_read_s: float = 250e-9
    UNITS: ClassVar[dict[str, str]] = {"q": "1 (relative to |g|)", "t_read_s": "s"}

    def __post_init__(self) -> None:
        _positive("ReadNoise.t_read_s", self.t_read_s)

    def time_factor(self, time_s) -> np.ndarray:
        """``log((t + t_read) / (2 t_read))`` clipped at 0: the variance multiplier ``R(t)``."""
        t = np.asarray(time_s, dtype=float)
        return np.maximum(np.log((t + self.t_read_s) / (2 * self.t_read_s)), 0.0)

    def relative_sigma(self, target, time_s):
        return self.q(target) * np.sqrt(self.time_factor(time_s))

    def apply(self, g, target, time_s, rng):
        sig = self.relative_sigma(target, time_s)
        return g + np.abs(g) * sig * rng.standard_normal(np.shape(g))

    def to_dict(self):
        return {"q": self.q.to_dict(), "t_read_s": float(self.t_read_s)}

    @classmethod
    def from_dict(cls, d):
        strict_keys(d, {"q", "t_read_s"}, "read_noise")
        return cls(state_function_from_dict(d.get("q", 0.0), "read_noise.q"),
                   doc_number(d.get("t_read_s", 250e-9), "read_noise.t_read_s"))


@dataclass(frozen=True)
class StuckAt:
    """Devices that ignore programming: stuck low with probability ``p_low``, high with ``p_high``.

    A stuck device reads ``g_low + spread_low * z`` (or the high counterpart) at every time: it
    neither drifts nor follows the target.
    """

    p_low: float = 0.0
    p_high: float = 0.0
    g_low: float = 0.0
    g_high: float = 0.0
    spread_low: float = 0.0
    spread_high: float = 0.0
    UNITS: ClassVar[dict[str, str]] = {"p_low": "1", "p_high": "1", "g_low": "model unit", "g_high": "model unit",
                                       "spread_low": "model unit", "spread_high": "model unit"}

    def __post_init__(self) -> None:
        _prob("StuckAt.p_low", self.p_low)
        _prob("StuckAt.p_high", self.p_high)
        if self.p_low + self.p_high >= 1:
            raise ModelSpecError(f"StuckAt: p_low + p_high must be < 1; got {self.p_low + self.p_high}.")
        _positive("StuckAt.spread_low", self.spread_low, allow_zero=True)
        _positive("StuckAt.spread_high", self.spread_high, allow_zero=True)
        for name in ("g_low", "g_high"):
            if not np.isfinite(_float(f"StuckAt.{name}", getattr(self, name))):
                raise ModelSpecError(f"StuckAt.{name} must be a finite conductance; got {getattr(self, name)!r}.")

    def draw_state(self, shape, rng) -> np.ndarray:
        """0 = programmable, 1 = stuck low, 2 = stuck high."""
        u = rng.random(shape)
        return np.where(u < self.p_low, 1, np.where(u < self.p_low + self.p_high, 2, 0)).astype(np.int8)

    def values(self, state, rng):
        z = rng.standard_normal(np.shape(state))
        return np.where(state == 1, self.g_low + self.spread_low * z, self.g_high + self.spread_high * z)

    def to_dict(self):
        return {k: float(getattr(self, k)) for k in ("p_low", "p_high", "g_low", "g_high", "spread_low", "spread_high")}

    @classmethod
    def from_dict(cls, d):
        strict_keys(d, {"p_low", "p_high", "g_low", "g_high", "spread_low", "spread_high"}, "stuck")
        return cls(**{k: doc_number(v, f"stuck.{k}") for k, v in d.items()})


@dataclass(frozen=True)
class ChipGain:
    """Chip-to-chip multiplicative gain, one draw per chip: ``gain = exp(sigma * z)`` (median 1)."""

    sigma: float = 0.0
    UNITS: ClassVar[dict[str, str]] = {"sigma": "1 (log-units)"}

    def __post_init__(self) -> None:
        _positive("ChipGain.sigma", self.sigma, allow_zero=True)
        if self.sigma > 1.0:
            raise ModelSpecError(f"ChipGain.sigma is in log units (gain = exp(sigma z)); {self.sigma!r} would make a "
                                 "chip's gain vary by more than a factor e per standard deviation. Give at most 1.")

    def draw(self, n, rng):
        return np.exp(self.sigma * rng.standard_normal(n))

    def to_dict(self):
        return {"sigma": float(self.sigma)}

    @classmethod
    def from_dict(cls, d):
        strict_keys(d, {"sigma"}, "chip_gain")
        return cls(doc_number(d.get("sigma", 0.0), "chip_gain.sigma"))
