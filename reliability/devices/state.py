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

from reliability.errors import ModelSpecError

__all__ = ["StateFunction", "Constant", "Polynomial", "Spline", "state_function_from_dict"]

_FIX = "Fix the value in the model file (or re-export the model)."


# ------------------------------------------------------------------ reading document values
# A device-model document is user input: every value is checked for its type here, where its path in
# the document is known, so that a wrong type is named (``drift.t0_s must be a number; got 'abc'``)
# instead of surfacing as a TypeError or ValueError from deep inside.
def doc_number(value: Any, where: str) -> float:
    """``value`` as a float: a JSON number (not a boolean, not a string); else :class:`ModelSpecError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ModelSpecError(f"{where} must be a number; got {value!r}. {_FIX}")
    try:
        return float(value)
    except OverflowError:
        raise ModelSpecError(f"{where} is too large to be a number ({str(value)[:20]}...); {_FIX}") from None


def doc_optional_number(value: Any, where: str) -> float | None:
    """``None`` or :func:`doc_number`."""
    return None if value is None else doc_number(value, where)


def doc_numbers(value: Any, where: str) -> tuple[float, ...]:
    """A JSON list of numbers as a tuple of floats."""
    if not isinstance(value, (list, tuple)):
        raise ModelSpecError(f"{where} must be a list of numbers; got {value!r}. {_FIX}")
    return tuple(doc_number(v, f"{where}[{i}]") for i, v in enumerate(value))


def doc_flag(value: Any, where: str) -> bool:
    """A JSON boolean (``true``/``false``), not a number or a string."""
    if not isinstance(value, (bool, np.bool_)):
        raise ModelSpecError(f"{where} must be true or false; got {value!r}. {_FIX}")
    return bool(value)


def doc_text(value: Any, where: str) -> str:
    """A JSON string."""
    if not isinstance(value, str):
        raise ModelSpecError(f"{where} must be a string; got {value!r}. {_FIX}")
    return value



def _pchip():
    """scipy's PCHIP interpolator, imported on first use (scipy.interpolate costs a third of a
    second to import, and most device models have no spline)."""
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator

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


def _lower(name: str, value: Any) -> float | None:
    """A lower bound: ``None`` or a finite number."""
    if value is None:
        return None
    v = _finite(name, value)
    if v.ndim != 0:
        raise ModelSpecError(f"{name} must be one number or None; got {value!r}.")
    return float(v)


def _finite(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise ModelSpecError(f"{name} must be numbers; got {values!r}.") from None
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
        x_scale = _finite("Polynomial.x_scale", self.x_scale)
        if not (x_scale.ndim == 0 and x_scale > 0):
            raise ModelSpecError(f"Polynomial.x_scale must be a positive number; got {self.x_scale!r}.")
        object.__setattr__(self, "x_scale", float(x_scale))
        object.__setattr__(self, "lower", _lower("Polynomial.lower", self.lower))

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
        object.__setattr__(self, "lower", _lower("Spline.lower", self.lower))
        if k.size > 2:
            try:
                with np.errstate(all="ignore"):
                    _pchip()(k, v, extrapolate=False)
            except ValueError:
                raise ModelSpecError(f"Spline: the values change too steeply between the knots to interpolate "
                                     f"(knots {list(k)[:4]}..., values {list(v)[:4]}...); check their "
                                     f"magnitudes.") from None

    def __call__(self, target):
        t = np.asarray(target, dtype=float)
        k = np.asarray(self.knots)
        v = np.asarray(self.values)
        if k.size == 1:
            out = np.full(t.shape, v[0])
        elif k.size == 2:
            out = np.interp(t, k, v)
        else:
            out = _pchip()(k, v, extrapolate=False)(np.clip(t, k[0], k[-1]))
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
        return Constant(doc_number(d, where))
    if not isinstance(d, dict) or "kind" not in d:
        raise ModelSpecError(f"{where}: expected a number or an object with 'kind' (constant, polynomial, spline); got {d!r}.")
    kind = d["kind"]
    if not isinstance(kind, str) or kind not in _STATE_FIELDS:
        raise ModelSpecError(f"{where}: unknown kind {kind!r}; use one of constant, polynomial, spline.")
    strict_keys(d, _STATE_FIELDS[kind], where)
    try:
        return _build(kind, d, where)
    except KeyError as exc:
        raise ModelSpecError(f"{where}: a '{kind}' needs the field {exc.args[0]!r}; got {d!r}.") from None
    except ModelSpecError as exc:
        if str(exc).startswith(where):
            raise
        raise ModelSpecError(f"{where}: {exc}") from None


def _build(kind: str, d: dict, where: str) -> StateFunction:
    if kind == "constant":
        return Constant(doc_number(d["value"], f"{where}.value"))
    if kind == "polynomial":
        return Polynomial(doc_numbers(d["coefficients"], f"{where}.coefficients"),
                          doc_number(d.get("x_scale", 1.0), f"{where}.x_scale"),
                          doc_optional_number(d.get("lower"), f"{where}.lower"))
    return Spline(doc_numbers(d["knots"], f"{where}.knots"), doc_numbers(d["values"], f"{where}.values"),
                  doc_optional_number(d.get("lower"), f"{where}.lower"))
