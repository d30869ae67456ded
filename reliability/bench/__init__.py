"""Benchmark cases shipped with the package: the home of the benchmark suite.

A case is a trained network, its evaluation set, the variation its chips get and a brute-force
Monte Carlo reference of the per-chip count of correct samples, against which tail estimates are
checked.  The package carries the public case ``digits_mlp_s05`` (its README, beside the files in
``reliability/bench/cases/``, says where its reference comes from), and the exact cases of
:mod:`reliability.bench.exact` (linear limit states and series systems in 10^3 to 10^5
dimensions, probabilities 1e-3 to 1e-7 in closed form), generated on demand by name.  The runnable
suite itself lives in ``benchmarks/`` for now.

>>> from reliability.bench import load_case
>>> case = load_case("digits_mlp_s05")
>>> p, se = case.reference_probability(526)    # P(count <= 526), about 1.4e-3
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reliability.cim import load_onnx
from reliability.cim.graph import Network
from reliability.bench.exact import EXACT_CASES, ExactCase, exact_case
from reliability.errors import DataValidationError, ReliabilityError

__all__ = ["Case", "ExactCase", "available_cases", "load_case", "exact_case", "CASES_DIR", "EXACT_CASES"]

#: Folder holding one sub-folder per shipped case.
CASES_DIR = Path(__file__).resolve().parent / "cases"

_FILES = ("model.onnx", "data.npz", "case.json", "reference_hist.npy")


@dataclass(frozen=True, eq=False)
class Case:
    """One benchmark case, loaded (see :func:`load_case`).

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
    variation : str
        The device specification every chip gets, as :func:`reliability.devices.load_device`
        accepts it, e.g. ``"weight-gaussian:sigma=0.05"``.
    clean_accuracy : float
        Accuracy of the network without variation, as recorded in ``case.json``.
    reference : numpy.ndarray
        Brute-force histogram (int64, length ``len(y) + 1``): entry ``c`` is the number of simulated
        chips that classified exactly ``c`` samples correctly; read-only.
    reference_chips : int
        Number of chips behind ``reference`` (its sum).
    path : pathlib.Path
        The case's folder.
    """

    name: str
    network: Network
    X: np.ndarray
    y: np.ndarray
    variation: str
    clean_accuracy: float
    reference: np.ndarray
    reference_chips: int
    path: Path

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
        The network, evaluation set, variation and the reference (brute force, or closed form for
        the exact cases); both answer ``reference_probability(count)``.

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
    meta = json.loads((folder / "case.json").read_text())
    if meta.get("variation") != "weight-gaussian" or "sigma" not in meta or "clean_accuracy" not in meta:
        raise DataValidationError(f"{folder / 'case.json'}: needs variation 'weight-gaussian', 'sigma' and "
                                  f"'clean_accuracy'; got keys {sorted(meta)} with variation "
                                  f"{meta.get('variation')!r}.")
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
    for a in (X, y, ref):
        a.flags.writeable = False
    return Case(name=name, network=load_onnx(folder / "model.onnx"), X=X, y=y,
                variation=f"weight-gaussian:sigma={meta['sigma']}", clean_accuracy=float(meta["clean_accuracy"]),
                reference=ref, reference_chips=int(ref.sum()), path=folder)
