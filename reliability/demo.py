"""The demo's workflow end to end, as data: fit the bundled device measurements, train a small
digits network, simulate it on 2,000 chips under three settings, estimate the tail far below
1/2,000 and search the worst case.

:func:`demo_steps` yields the result as it grows (so a caller can show each part as soon as it is
ready); :func:`run_demo` returns the finished :class:`DemoResult`.  The ``reliability demo`` command
only prints what these return.  Every draw is seeded (``rng=0``), so the numbers are reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

#: The bundled measurement set the demo fits (CrossSim pulse ramps, BSD-3, read at 0.1 V).
DEMO_DATA = "crosssim-set"
#: Chips simulated per setting.
DEMO_CHIPS = 2000
#: The variation the tail and the worst case are computed for.
DEMO_VARIATION = "weight-gaussian:sigma=0.1"
#: Accuracy thresholds a of P(accuracy <= a), and the tail probability k of the k-th percentile.
DEMO_BELOW = (0.70, 0.65)
DEMO_QUANTILES = (1e-5,)
#: Chip evaluations the tail estimate may spend.
DEMO_TAIL_BUDGET = 10000
#: Worst-case bounds in sigma units, and the random chips drawn within each as a baseline.
DEMO_BOUNDS = (0.05, 0.1, 0.25, 0.5)
DEMO_RANDOM_CHIPS = 100


@dataclass(frozen=True)
class ChipSetting:
    """Accuracy over the simulated chips of one chip setting (percentiles from the bottom).

    Attributes
    ----------
    label : str
        What the setting is, in words.
    mean, std, median : float
        Mean, sample standard deviation (``ddof=1``) and median accuracy.
    p1, p01 : float
        The 1 % and 0.1 % percentiles of accuracy.
    worst : float
        The lowest accuracy of any simulated chip.
    seconds : float
        Wall time of the simulation.
    """

    label: str
    mean: float
    std: float
    median: float
    p1: float
    p01: float
    worst: float
    seconds: float


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo computes; a field is ``None`` until its part has run.

    Attributes
    ----------
    table : MeasurementTable
        The bundled measurements.
    fit : DeviceFitResult
        The maximum-likelihood device fit of ``table``.
    network : Network
        The 64-32-10 MLP trained on scikit-learn's digits, imported as an analog network.
    n_eval : int
        Held-out digits the chips are evaluated on.
    clean_accuracy : float
        The trained network's accuracy on them without variation.
    settings : tuple of ChipSetting
        Accuracy over :data:`DEMO_CHIPS` simulated chips for each of the three settings.
    tail : TailResult
        Tail probabilities and the worst-1e-5 accuracy under :data:`DEMO_VARIATION`.
    worst_case : WorstCaseResult
        Worst-case accuracy within each of :data:`DEMO_BOUNDS` sigma under :data:`DEMO_VARIATION`.
    """

    table: Any = None
    fit: Any = None
    network: Any = None
    n_eval: int | None = None
    clean_accuracy: float | None = None
    settings: tuple[ChipSetting, ...] | None = None
    tail: Any = None
    worst_case: Any = None

    def settings_to_polars(self):
        """The per-setting accuracy table as a polars DataFrame, one row per setting."""
        import polars as pl

        return pl.DataFrame([dataclasses.asdict(s) for s in self.settings or ()])


def train_digits_mlp():
    """Train the demo's 64-32-10 MLP on scikit-learn's digits.

    Returns
    -------
    network : Network
        The trained classifier imported with :func:`reliability.cim.from_sklearn`.
    x, y : numpy.ndarray
        The held-out inputs and labels.
    clean_accuracy : float
        The classifier's accuracy on them.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reliability.cim import from_sklearn
    from reliability.data.evalset import digits_evalset

    Xtr, ytr, Xev, yev = digits_evalset()
    with warnings.catch_warnings():
        # 300 iterations are enough for the demo; the optimizer's "not converged" is noise here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(Xtr, ytr)
    return from_sklearn(clf), Xev, yev, float(clf.score(Xev, yev))


def simulate_settings(network, x, y, n_chips: int = DEMO_CHIPS) -> tuple[ChipSetting, ...]:
    """Accuracy of ``network`` on ``n_chips`` chips under the demo's three settings.

    The settings: weight-level Gaussian variation (sigma 0.1); the PCM preset read after one day
    with 8-bit weights in 2-bit slices; the PCM preset read after one year with analog weights.
    Each uses chips ``0 .. n_chips-1`` of seed 0.
    """
    from reliability.cim.simulate import ChipSimulator
    from reliability.cim.spec import ChipSpec, MappingSpec
    from reliability.devices import load_device

    rows = []
    for label, spec in (
        ("weight-gaussian sigma=0.1", DEMO_VARIATION),
        ("PCM preset, 1 day, 8-bit weights, 2-bit slices", ChipSpec(device=load_device("pcm"), time_s=86400.0,
                                                                  mapping=MappingSpec(weight_bits=8, device_bits=2))),
        ("PCM preset, 1 year, analog weights", ChipSpec(device=load_device("pcm"), time_s=3.15e7)),
    ):
        res = ChipSimulator(network, spec).evaluate(x, y, n_chips, rng=0)
        a = res.accuracy
        q = np.percentile(a, [0.1, 1, 50])
        rows.append(ChipSetting(label=label, mean=float(a.mean()), std=float(a.std(ddof=1)), median=float(q[2]),
                                p1=float(q[1]), p01=float(q[0]), worst=float(a.min()), seconds=res.seconds))
    return tuple(rows)


def demo_steps() -> Iterator[tuple[str, DemoResult]]:
    """Run the demo part by part.

    Yields
    ------
    part : str
        The part just finished: ``"data"``, ``"fit"``, ``"network"``, ``"chips"``, ``"tail"``,
        ``"worst_case"``, in this order.
    result : DemoResult
        Everything computed so far (later fields ``None``).
    """
    from reliability.data import load_bundled
    from reliability.fit import fit_device
    from reliability.sampling import estimate_tail
    from reliability.worstcase import worst_case

    r = DemoResult(table=load_bundled(DEMO_DATA))
    yield "data", r
    r = dataclasses.replace(r, fit=fit_device(r.table, name=DEMO_DATA))
    yield "fit", r
    net, x, y, clean = train_digits_mlp()
    r = dataclasses.replace(r, network=net, n_eval=len(y), clean_accuracy=clean)
    yield "network", r
    r = dataclasses.replace(r, settings=simulate_settings(net, x, y))
    yield "chips", r
    r = dataclasses.replace(r, tail=estimate_tail(net, x, y, DEMO_VARIATION, below=list(DEMO_BELOW),
                                                  quantiles=list(DEMO_QUANTILES), budget=DEMO_TAIL_BUDGET, rng=0))
    yield "tail", r
    r = dataclasses.replace(r, worst_case=worst_case(net, x, y, DEMO_VARIATION, bounds=list(DEMO_BOUNDS),
                                                     random_chips=DEMO_RANDOM_CHIPS, sensitivity=False, rng=0))
    yield "worst_case", r


def run_demo() -> DemoResult:
    """Run the whole demo and return its :class:`DemoResult` (about 20-40 s)."""
    result = None
    for _, result in demo_steps():
        pass
    return result
