"""Functions of the programmed target conductance (state dependence of a device parameter).

A device parameter such as the programming-noise scale or the mean drift exponent usually depends
on the state the device is programmed to.  :class:`Constant`, :class:`Polynomial` and
:class:`Spline` express that dependence; each evaluates vectorized over an array of targets and
serializes to a small JSON object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from reliability.errors import ModelSpecError

__all__ = ["StateFunction", "Constant", "Polynomial", "Spline", "state_function_from_dict"]


class StateFunction(ABC):
    """Base class: ``f(target)`` evaluated elementwise, in the parameter's own unit."""

    kind: str = ""

    @abstractmethod
    def __call__(self, target: np.ndarray | float) -> np.ndarray:
        """Evaluate at ``target`` (any shape)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON form, read back by :func:`state_function_from_dict`."""

    @abstractmethod
    def describe(self, unit: str = "") -> str:
        """One-line human-readable form."""


def _finite(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ModelSpecError(f"{name} must be finite numbers; got {values!r}. Replace NaN/inf entries.")
    return arr


@dataclass(frozen=True)
class Constant(StateFunction):
    """The same value for every target."""

    value: float
    kind: str = field(default="constant", init=False)

    def __post_init__(self) -> None:
        _finite("Constant.value", self.value)

    def __call__(self, target):
        t = np.asarray(target, dtype=float)
        return np.full(t.shape, float(self.value))

    def to_dict(self):
        return {"kind": "constant", "value": float(self.value)}

    def describe(self, unit=""):
        return f"{self.value:.6g}{(' ' + unit) if unit else ''}"


@dataclass(frozen=True)
class Polynomial(StateFunction):
    """``sum_i c_i (target / x_scale)^i``, optionally bounded below by ``lower``.

    ``lower`` is part of the model (for example a noise scale cannot be negative, as in aihwkit's
    PCM model where the programming-noise polynomial is clamped at zero); it is stored in the
    JSON file and shown by ``reliability device show``.
    """

    coefficients: tuple[float, ...]
    x_scale: float = 1.0
    lower: float | None = None
    kind: str = field(default="polynomial", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coefficients", tuple(float(c) for c in _finite("Polynomial.coefficients", self.coefficients)))
        if len(self.coefficients) == 0:
            raise ModelSpecError("Polynomial.coefficients is empty; give at least one coefficient.")
        if not (np.isfinite(self.x_scale) and self.x_scale > 0):
            raise ModelSpecError(f"Polynomial.x_scale must be a positive number; got {self.x_scale!r}.")

    def __call__(self, target):
        x = np.asarray(target, dtype=float) / self.x_scale
        out = np.zeros_like(x)
        for c in reversed(self.coefficients):
            out = out * x + c
        if self.lower is not None:
            out = np.maximum(out, self.lower)
        return out

    def to_dict(self):
        return {"kind": "polynomial", "coefficients": list(self.coefficients), "x_scale": float(self.x_scale),
                "lower": None if self.lower is None else float(self.lower)}

    def describe(self, unit=""):
        terms = " + ".join(f"{c:.4g}*(g/{self.x_scale:g})^{i}" if i else f"{c:.4g}" for i, c in enumerate(self.coefficients))
        low = f", at least {self.lower:g}" if self.lower is not None else ""
        return f"{terms}{(' ' + unit) if unit else ''}{low}"


@dataclass(frozen=True)
class Spline(StateFunction):
    """Shape-preserving (PCHIP) interpolation through ``(knots, values)``; constant beyond the end knots.

    Holding the end values constant (instead of extrapolating a cubic) keeps the parameter in the
    range that was measured.  A single knot gives a constant.
    """

    knots: tuple[float, ...]
    values: tuple[float, ...]
    lower: float | None = None
    kind: str = field(default="spline", init=False)

    def __post_init__(self) -> None:
        k = _finite("Spline.knots", self.knots)
        v = _finite("Spline.values", self.values)
        if k.ndim != 1 or k.shape != v.shape or k.size == 0:
            raise ModelSpecError(f"Spline.knots and Spline.values must be 1-D of equal, non-zero length; got {k.shape} and {v.shape}.")
        if np.any(np.diff(k) <= 0):
            raise ModelSpecError(f"Spline.knots must be strictly increasing; got {list(k)}. Sort them and merge duplicates.")
        object.__setattr__(self, "knots", tuple(float(x) for x in k))
        object.__setattr__(self, "values", tuple(float(x) for x in v))

    def __call__(self, target):
        t = np.asarray(target, dtype=float)
        k = np.asarray(self.knots)
        v = np.asarray(self.values)
        if k.size == 1:
            out = np.full(t.shape, v[0])
        elif k.size == 2:
            out = np.interp(t, k, v)
        else:
            out = PchipInterpolator(k, v, extrapolate=False)(np.clip(t, k[0], k[-1]))
        if self.lower is not None:
            out = np.maximum(out, self.lower)
        return np.asarray(out, dtype=float)

    def to_dict(self):
        return {"kind": "spline", "knots": list(self.knots), "values": list(self.values),
                "lower": None if self.lower is None else float(self.lower)}

    def describe(self, unit=""):
        pts = [f"{k:.4g}->{v:.4g}" for k, v in zip(self.knots, self.values)]
        pairs = ", ".join(pts) if len(pts) <= 8 else ", ".join(pts[:3] + ["..."] + pts[-2:])
        return f"spline through {len(self.knots)} knots [{pairs}]{(' ' + unit) if unit else ''}"


def strict_keys(d: Any, allowed, where: str) -> dict:
    """``d`` as a dict whose keys are all in ``allowed``; else :class:`ModelSpecError` naming the
    path of the first unknown key (``where.key``) and the known ones.  Used at every level of a
    device-model document, so that a misspelt field is never replaced by its default."""
    if not isinstance(d, dict):
        raise ModelSpecError(f"{where}: expected an object; got {d!r}.")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ModelSpecError(f"unknown field {where}.{unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                             + f"; {where} knows {sorted(allowed)}. Fix the spelling or remove it.")
    return d


_STATE_FIELDS = {"constant": {"kind", "value"}, "polynomial": {"kind", "coefficients", "x_scale", "lower"},
                 "spline": {"kind", "knots", "values", "lower"}}


def state_function_from_dict(d: Any, where: str = "state function") -> StateFunction:
    """Build a :class:`StateFunction` from its JSON form; a bare number means :class:`Constant`."""
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return Constant(float(d))
    if not isinstance(d, dict) or "kind" not in d:
        raise ModelSpecError(f"{where}: expected a number or an object with 'kind' (constant, polynomial, spline); got {d!r}.")
    kind = d["kind"]
    if kind in _STATE_FIELDS:
        strict_keys(d, _STATE_FIELDS[kind], where)
    try:
        if kind == "constant":
            return Constant(float(d["value"]))
        if kind == "polynomial":
            return Polynomial(tuple(d["coefficients"]), float(d.get("x_scale", 1.0)), d.get("lower"))
        if kind == "spline":
            return Spline(tuple(d["knots"]), tuple(d["values"]), d.get("lower"))
    except KeyError as exc:
        raise ModelSpecError(f"{where}: a '{kind}' needs the field {exc.args[0]!r}; got {d!r}.") from None
    raise ModelSpecError(f"{where}: unknown kind {kind!r}; use one of constant, polynomial, spline.")
