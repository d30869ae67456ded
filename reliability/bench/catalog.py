"""The suite's cases: shipped folders with a brute-force reference, and the exact cases built on
demand (:mod:`reliability.bench.exact`).

A case folder holds ``model.onnx`` (the trained network), ``data.npz`` (``X``, ``y``: the
evaluation set), ``reference_hist.npy`` (entry ``c``: the reference's chips with exactly ``c``
samples right) and ``case.json``:

- the variation: ``"variation": "weight-gaussian"`` with ``"sigma"``, or ``"chip"``: a chip
  specification as :meth:`reliability.cim.spec.ChipSpec.to_dict` writes it (device model, read time,
  mapping, periphery);
- ``"clean_accuracy"``, ``"n_eval"``;
- ``"events"`` (optional): the count thresholds ``c`` of the events ``n_correct <= c`` the suite
  runs (default: :func:`default_events`);
- ``"reference"`` (optional): how the histogram was made (``chips``, ``seed``, ``method``,
  ``network_sha256``, ``generator``).

Every case has a :attr:`~Case.version`: a digest of its files (or of the exact case's parameters),
recorded with every benchmark run so that runs against different references are never pooled.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reliability.bench.exact import EXACT_CASES, ExactCase, exact_case
from reliability.cim import load_onnx
from reliability.cim.graph import Network
from reliability.cim.spec import ChipSpec
from reliability.errors import DataValidationError, ReliabilityError

__all__ = ["Case", "available_cases", "load_case", "default_events", "CASES_DIR", "MIN_REFERENCE_CHIPS"]

#: Folder holding one sub-folder per shipped case.
CASES_DIR = Path(__file__).resolve().parent / "cases"

#: An event is benchmarked only where the reference has at least this many chips in it (relative
#: error of the reference <= 10 %).
MIN_REFERENCE_CHIPS = 100

_FILES = ("model.onnx", "data.npz", "case.json", "reference_hist.npy")


def default_events(hist, probabilities=(1e-3, 1e-4, 1e-5)) -> tuple[int, ...]:
    """For each target probability, the count threshold whose reference probability is nearest in
    log among those with at least :data:`MIN_REFERENCE_CHIPS` reference chips in the event; targets
    the reference cannot reach within a factor 2 are left out."""
    hist = np.asarray(hist)
    cum = np.cumsum(hist)
    cdf = cum / cum[-1]
    ok = np.flatnonzero(cum >= MIN_REFERENCE_CHIPS)
    out: list[int] = []
    for p in probabilities:
        if not ok.size or cdf[ok[0]] > 2 * p:
            continue
        c = int(ok[np.argmin(np.abs(np.log(cdf[ok]) - math.log(p)))])
        if c not in out:
            out.append(c)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Case:
    """One benchmark case with a brute-force reference, loaded (see :func:`load_case`).

    Attributes
    ----------
    name : str
        The case's folder name, e.g. ``"digits_mlp_s05"``.
    network : reliability.cim.graph.Network
        The trained network, imported from the case's ``model.onnx``.
    X : numpy.ndarray
        Evaluation inputs (float32, first axis = samples); read-only.
    y : numpy.ndarray
        Evaluation labels (int64), one per sample; read-only.
    variation : str or ChipSpec
        What every chip gets, as :func:`reliability.sampling.estimate_tail` accepts it, e.g.
        ``"weight-gaussian:sigma=0.05"``.
    clean_accuracy : float
        Accuracy of the network without variation, as recorded in ``case.json``.
    reference : numpy.ndarray
        Brute-force histogram (int64, length ``len(y) + 1``): entry ``c`` is the number of simulated
        chips that classified exactly ``c`` samples correctly; read-only.
    reference_chips : int
        Number of chips behind ``reference`` (its sum).
    path : pathlib.Path
        The case's folder.
    events : tuple of int
        Count thresholds the suite runs: events ``n_correct <= c``.
    version : str
        Digest of the case's files (12 hex digits).
    provenance : dict
        How the reference was made (``case.json``'s ``reference``), possibly empty.
    """

    name: str
    network: Network
    X: np.ndarray
    y: np.ndarray
    variation: object
    clean_accuracy: float
    reference: np.ndarray
    reference_chips: int
    path: Path
    events: tuple = ()
    version: str = ""
    provenance: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of evaluation samples."""
        return int(len(self.y))

    def reference_probability(self, count: int) -> tuple[float, float]:
        """The reference's P(count <= ``count``) and its binomial standard error.

        Parameters
        ----------
        count : int
            Number of correctly classified samples, ``0 <= count <= n_samples``; accuracy
            ``count / n_samples``.

        Returns
        -------
        probability : float
            Fraction of the reference's chips with at most ``count`` samples right.
        std_error : float
            ``sqrt(p (1 - p) / reference_chips)``: the reference is itself plain Monte Carlo.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= self.n_samples:
            raise ReliabilityError(f"count={count!r}: must be an integer from 0 to {self.n_samples} (the number of "
                                   f"evaluation samples of case {self.name!r}); for an accuracy a pass "
                                   f"round(a * {self.n_samples}).")
        p = float(self.reference[: int(count) + 1].sum()) / self.reference_chips
        return p, math.sqrt(p * (1.0 - p) / self.reference_chips)


def available_cases() -> tuple[str, ...]:
    """Names of the cases shipped with the package (folders with a brute-force reference, then the
    exact cases), each sorted."""
    folders = (tuple(sorted(p.name for p in CASES_DIR.iterdir() if (p / "case.json").is_file()))
               if CASES_DIR.is_dir() else ())
    return folders + tuple(sorted(EXACT_CASES))


def _variation(meta: dict, where: Path):
    if "chip" in meta:
        try:
            return ChipSpec.from_dict(meta["chip"], where=f"{where}: chip")
        except ReliabilityError as exc:
            raise DataValidationError(str(exc)) from None
    if meta.get("variation") == "weight-gaussian" and isinstance(meta.get("sigma"), (int, float)):
        return f"weight-gaussian:sigma={meta['sigma']}"
    raise DataValidationError(f"{where}: needs 'variation': 'weight-gaussian' with a numeric 'sigma', or a 'chip' "
                              f"specification; got keys {sorted(meta)} with variation {meta.get('variation')!r}.")


def load_case(name) -> Case | ExactCase:
    """Load a benchmark case: a shipped one by name, or any case folder in the same format by path.

    Parameters
    ----------
    name : str or path
        The case's name; :func:`available_cases` lists them (``"digits_mlp_s05"``); or a folder
        holding ``model.onnx``, ``data.npz``, ``case.json`` and ``reference_hist.npy``.

    Returns
    -------
    Case or ExactCase
        The network, evaluation set, variation, events and the reference (brute force, or closed
        form for the exact cases); both answer ``reference_probability(count)``.

    Raises
    ------
    ReliabilityError
        ``name`` is neither a shipped case (the message lists those that are) nor a folder.
    DataValidationError
        A file of the case is missing or inconsistent (a broken installation).
    """
    if isinstance(name, str) and name in EXACT_CASES:
        dim, probabilities = EXACT_CASES[name]
        return exact_case(dim, probabilities, name=name)
    names = available_cases()
    if isinstance(name, (str, Path)) and str(name) not in names and Path(name).is_dir():
        folder = Path(name)
        name = folder.name
    elif not isinstance(name, str) or name not in names:
        raise ReliabilityError(f"name={name!r}: not a shipped benchmark case nor a case folder; available: "
                               f"{', '.join(names) or 'none'}.")
    else:
        folder = CASES_DIR / name
    missing = [f for f in _FILES if not (folder / f).is_file()]
    if missing:
        raise DataValidationError(f"benchmark case {name!r} at {folder}: missing {', '.join(missing)}; reinstall "
                                  f"the package (its package data holds these files).")
    try:
        meta = json.loads((folder / "case.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{folder / 'case.json'} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or "clean_accuracy" not in meta:
        raise DataValidationError(f"{folder / 'case.json'}: needs an object with 'clean_accuracy'.")
    variation = _variation(meta, folder / "case.json")
    with np.load(folder / "data.npz") as z:
        if not {"X", "y"} <= set(z.files):
            raise DataValidationError(f"{folder / 'data.npz'}: needs arrays 'X' and 'y'; has {z.files}.")
        X, y = z["X"], z["y"]
    ref = np.load(folder / "reference_hist.npy")
    if len(X) != len(y) or ref.shape != (len(y) + 1,) or ref.min() < 0 or ref.sum() <= 0:
        raise DataValidationError(f"benchmark case {name!r}: X has {len(X)} samples, y {len(y)}, the reference "
                                  f"histogram shape {ref.shape} (must be ({len(y) + 1},), non-negative, non-empty).")
    if "n_eval" in meta and meta["n_eval"] != len(y):
        raise DataValidationError(f"{folder / 'case.json'}: n_eval={meta['n_eval']} but data.npz holds {len(y)} "
                                  f"samples.")
    events = meta.get("events", None)
    if events is None:
        events = default_events(ref)
    elif not (isinstance(events, list) and all(isinstance(c, int) and 0 <= c < len(y) for c in events)):
        raise DataValidationError(f"{folder / 'case.json'}: 'events' must be a list of counts from 0 to "
                                  f"{len(y) - 1}; got {events!r}.")
    digest = hashlib.sha256()
    for f in _FILES:
        digest.update((folder / f).read_bytes())
    for a in (X, y, ref):
        a.flags.writeable = False
    return Case(name=name, network=load_onnx(folder / "model.onnx"), X=X, y=y, variation=variation,
                clean_accuracy=float(meta["clean_accuracy"]), reference=ref, reference_chips=int(ref.sum()),
                path=folder, events=tuple(int(c) for c in events), version=digest.hexdigest()[:12],
                provenance=dict(meta.get("reference", {})))
