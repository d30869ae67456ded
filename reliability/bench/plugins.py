"""Estimators in the suite: the toolkit's own by name, any other by import path.

An estimator is

- a class implementing :class:`~reliability.sampling.TailEstimator` (a ``name`` and
  ``run(problem, *, budget, rng, checkpoint=None, progress=None)`` returning an
  :class:`~reliability.sampling.EstimatorRun`), built as ``Class(**options)``;
- or a function ``f(problem, *, budget, rng, **options)`` returning an ``EstimatorRun`` or a mapping
  with one entry per event of the problem: ``probability``, ``std_error`` and ``ci95`` (a list of
  ``(lo, hi)``), optionally ``reliable`` (list of bool) and ``method``.

``rng`` is the run's integer seed (``numpy.random.default_rng(rng)`` gives a generator).  Names:
``hybrid``, ``subset``, ``mc``, ``is`` (:data:`reliability.sampling.ESTIMATORS`); an import path is
``package.module:Name`` (the current directory is searched too) or ``path/to/file.py:Name``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reliability.errors import ReliabilityError
from reliability.sampling import ESTIMATORS, EstimatorRun, TailEstimate

__all__ = ["EstimatorSpec", "resolve", "FunctionEstimator", "normalize_run", "InvalidResult"]


class InvalidResult(ReliabilityError):
    """An estimator returned something that is not a result for the problem's events."""


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator as the suite records it: what was asked for (``spec``), its options and a label.

    :meth:`build` makes a fresh estimator for one run."""

    spec: str
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``spec`` with its options, e.g. ``"subset(p0=0.2)"``."""
        if not self.options:
            return self.spec
        return f"{self.spec}({', '.join(f'{k}={json.dumps(v)}' for k, v in sorted(self.options.items()))})"

    def build(self):
        obj = _load(self.spec)
        if inspect.isclass(obj):
            try:
                est = obj(**self.options)
            except TypeError as exc:
                raise ReliabilityError(f"estimator {self.spec!r}: cannot be built with options {self.options}: {exc}; "
                                       f"pass the options its constructor takes.") from None
            if not callable(getattr(est, "run", None)):
                raise ReliabilityError(f"estimator {self.spec!r}: the class has no run(problem, *, budget, rng) method.")
            return est
        if callable(getattr(obj, "run", None)):
            if self.options:
                raise ReliabilityError(f"estimator {self.spec!r} is an object, built already; options "
                                       f"{self.options} cannot be applied (name its class instead).")
            return obj
        if callable(obj):
            return FunctionEstimator(obj, self.options, self.spec)
        raise ReliabilityError(f"estimator {self.spec!r}: {type(obj).__name__} is neither a class, an object with a "
                               f"run method, nor a function.")


def resolve(spec: str, options: Mapping | None = None) -> EstimatorSpec:
    """The estimator ``spec`` (a name or an import path) with ``options``, checked now: a name that
    does not resolve raises :class:`~reliability.errors.ReliabilityError` before any run starts."""
    if not isinstance(spec, str) or not spec.strip():
        raise ReliabilityError(f"estimator={spec!r}: a name ({', '.join(ESTIMATORS)}) or an import path "
                               f"'package.module:Name' / 'file.py:Name'.")
    opts = dict(options or {})
    try:
        json.dumps(opts)
    except (TypeError, ValueError):
        raise ReliabilityError(f"estimator options {opts!r}: values must be JSON numbers, strings, booleans, lists "
                               f"or null (they are recorded with every run).") from None
    out = EstimatorSpec(spec.strip(), opts)
    out.build()      # fail early: import errors and bad options surface before the first run
    return out


def _load(spec: str):
    if spec in ESTIMATORS:
        return ESTIMATORS[spec]
    if ":" not in spec:
        raise ReliabilityError(f"estimator={spec!r}: not a registered name ({', '.join(ESTIMATORS)}) nor an import "
                               f"path 'package.module:Name' or 'file.py:Name'.")
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ReliabilityError(f"estimator={spec!r}: the file {path} does not exist.")
        name = f"_reliability_plugin_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(name)
        if module is None:
            mspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            try:
                mspec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise ReliabilityError(f"estimator={spec!r}: importing {path} failed: "
                                       f"{type(exc).__name__}: {exc}") from exc
    else:
        added = "" not in sys.path and "." not in sys.path
        if added:
            sys.path.append("")     # the current directory, as `python -m` has it
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ReliabilityError(f"estimator={spec!r}: cannot import {where!r} ({exc}); check the module path, "
                                   f"or give the file as 'path/to/file.py:{attr}'.") from None
        finally:
            if added:
                sys.path.remove("")
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ReliabilityError(f"estimator={spec!r}: {where} has no {attr!r}.") from None


class FunctionEstimator:
    """A function ``f(problem, *, budget, rng, **options)`` as a
    :class:`~reliability.sampling.TailEstimator`."""

    def __init__(self, fn, options: dict, name: str):
        self.fn = fn
        self.options = dict(options)
        self.name = name

    def run(self, problem, *, budget, rng, checkpoint=None, progress=None):
        return self.fn(problem, budget=budget, rng=rng, **self.options)


def normalize_run(result, problem) -> EstimatorRun:
    """``result`` (an :class:`EstimatorRun` or the mapping of the module docstring) as an
    ``EstimatorRun`` with one estimate per event; :class:`InvalidResult` names what is wrong.
    Non-finite numbers are kept: the runner records them as failures."""
    events = len(problem.count_thresholds)
    if isinstance(result, EstimatorRun):
        if len(result.estimates) != events:
            raise InvalidResult(f"returned {len(result.estimates)} estimate(s) for {events} event(s).")
        return result
    if not isinstance(result, Mapping):
        raise InvalidResult(f"returned a {type(result).__name__}; an EstimatorRun or a mapping with 'probability', "
                            f"'std_error' and 'ci95' is expected.")
    missing = [k for k in ("probability", "std_error", "ci95") if k not in result]
    if missing:
        raise InvalidResult(f"the returned mapping lacks {missing}.")
    try:
        p = [float(v) for v in result["probability"]]
        se = [float(v) for v in result["std_error"]]
        ci = [(float(a), float(b)) for a, b in result["ci95"]]
        ok = [bool(v) for v in result.get("reliable", [True] * events)]
    except (TypeError, ValueError) as exc:
        raise InvalidResult(f"the returned numbers cannot be read: {exc}.") from None
    if not len(p) == len(se) == len(ci) == len(ok) == events:
        raise InvalidResult(f"returned {len(p)} probabilities, {len(se)} standard errors, {len(ci)} intervals and "
                            f"{len(ok)} verdicts for {events} event(s).")
    method = str(result.get("method", "plug-in"))
    ests = tuple(TailEstimate(a, pi, si, ci_, method, 0, float("nan"), r, None if r else "flagged by the estimator",
                              int(k)) for a, k, pi, si, ci_, r in zip(problem.below, problem.count_thresholds, p, se,
                                                                      ci, ok))
    return EstimatorRun(ests, (), int(result.get("evaluations", 0) or 0), method)
