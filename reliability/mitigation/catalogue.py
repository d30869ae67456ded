"""The mitigation catalogue: each mitigation a declarative transform of a design (the chip
specification, and where it must the network), parsed from a short string.

``name:key=value,key=value`` names one mitigation, ``a + b`` combines several (applied left to
right); ``baseline`` (or ``none``) is the design as given.  :data:`CATALOGUE` lists them with their
parameters, units and defaults; :func:`parse_mitigation` reads a string.
"""

from __future__ import annotations

import abc

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import numpy as np

from reliability.cim import ChipSimulator
from reliability.cim.spec import ChipSpec
from reliability.errors import ModelSpecError

__all__ = [
    "Design", "Mitigation", "Combination", "WriteVerify", "SelectiveWriteVerify", "Replicas", "BitSlicing",
    "Differential", "AdcPrecision", "DacPrecision", "DriftCompensation", "Refresh", "NoiseAwareTraining", "SpareColumns",
    "ResidualWriteVerify", "RESIDUALS", "CATALOGUE",
    "parse_mitigation",
]


@dataclass(frozen=True)
class Design:
    """A chip design a mitigation acts on: the network, its chip specification and what the
    specification does not hold.

    Attributes
    ----------
    network : reliability.cim.graph.Network
    spec : ChipSpec
    verify_mask : tuple of (K, N) boolean arrays, or None
        Selective write-verify: the weights whose devices are verified (None: all of them when
        ``spec.write_verify`` is set).
    refresh_period_s : float or None
        Periodic refresh: the chip is reprogrammed every period (its read time is bounded by it).
    calibration_period_s : float or None
        Drift compensation: one calibration read per tile per period.
    training_epochs : float
        Epochs of hardware-aware fine-tuning the network received.
    residual_pulses : float
        Write-verify given as a published residual: the pulses per device it takes (0: none).
    """

    network: object
    spec: ChipSpec
    verify_mask: tuple | None = None
    refresh_period_s: float | None = None
    calibration_period_s: float | None = None
    training_epochs: float = 0.0
    residual_pulses: float = 0.0

    def simulator(self, threads: int | None = None) -> ChipSimulator:
        return ChipSimulator(self.network, self.spec, threads=threads, verify_mask=self.verify_mask)

    def with_spec(self, **changes) -> "Design":
        return replace(self, spec=self.spec.with_(**changes))


@dataclass(frozen=True)
class Context:
    """What a mitigation may need besides the design: the evaluation data, training data (for
    fine-tuning, and for sensitivities when given) and the seed."""

    x: np.ndarray
    y: np.ndarray
    seed: int = 0
    train_x: np.ndarray | None = None
    train_y: np.ndarray | None = None

    def fit_data(self):
        """The data sensitivities are estimated on: the training data when given, else the evaluation data."""
        if self.train_x is not None:
            return self.train_x, self.train_y
        return self.x, self.y


class Mitigation(abc.ABC):
    """Base of the catalogue's entries: ``apply(design, context) -> design`` and a canonical string.

    Subclasses are frozen dataclasses; ``key`` is their name in strings, ``UNITS`` the unit of each
    parameter and ``DOC`` one line on what the mitigation does.
    """

    key: ClassVar[str] = ""
    UNITS: ClassVar[dict] = {}
    DOC: ClassVar[str] = ""

    @abc.abstractmethod
    def apply(self, design: Design, context: Context) -> Design:
        """The design with this mitigation applied (a new :class:`Design`; ``design`` is unchanged)."""

    @property
    def parts(self) -> tuple["Mitigation", ...]:
        return (self,)

    def __str__(self) -> str:
        vals = [f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self)]
        return self.key + (":" + ",".join(vals) if vals else "")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _positive_int(name, v, lo=1, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        rng = f"from {lo}" + (f" to {hi}" if hi is not None else "")
        raise ModelSpecError(f"{name} must be a whole number {rng}; got {v!r}.")


def _tolerance(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1):
        raise ModelSpecError(f"{name} must be a fraction of the conductance range in (0, 1); got {v!r}.")


def _period(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and np.isfinite(v)):
        raise ModelSpecError(f"{name} must be a positive number of seconds; got {v!r}.")


def _no_verify_yet(design: Design, what: str):
    if design.spec.write_verify or design.residual_pulses:
        how = (f"tolerance {design.spec.write_verify:g}" if design.spec.write_verify else "a post-verify residual")
        raise ModelSpecError(f"{what}: the design is write-verified already ({how}); give one of write-verify, "
                             "write-verify-residual or swim per candidate.")


@dataclass(frozen=True)
class WriteVerify(Mitigation):
    key: ClassVar[str] = "write-verify"
    UNITS: ClassVar[dict] = {"tolerance": "fraction of the conductance range (g_max - g_min)"}
    DOC: ClassVar[str] = ("every device reprogrammed until |g - target| <= tolerance x (g_max - g_min): the "
                          "programming error is truncated to the band; cost: 1 / P(band) pulses and verify reads per device")
    tolerance: float = 0.05

    def __post_init__(self):
        _tolerance("write-verify tolerance", self.tolerance)

    def apply(self, design, context):
        _no_verify_yet(design, str(self))
        return replace(design.with_spec(write_verify=float(self.tolerance)), verify_mask=None)


#: Published post-verify residuals sigma(g) (uS, g in uS): coefficients of a polynomial in
#: ``g / x_scale``, clamped at 0, with their sources.
RESIDUALS = {
    "pcm-aihwkit": ((0.2635, 1.9650, -1.1731), 25.0,
                    "aihwkit PCM programming noise after write-verify (inference/noise/pcm.py; g normalised to 25 uS)"),
    "pcm-crosssim": ((0.286, 0.0759, -0.00179), 1.0, "CrossSim's fit of the same PCM data (devices/custom/PCM_Joshi.py)"),
    "rram-milo": ((4.78, -0.0091), 1.0, "RRAM after Milo's iterative algorithm, G 50-225 uS (CrossSim RRAM_Milo.py)"),
}


@dataclass(frozen=True)
class ResidualWriteVerify(Mitigation):
    key: ClassVar[str] = "write-verify-residual"
    UNITS: ClassVar[dict] = {"curve": " | ".join(RESIDUALS), "pulses": "mean write-verify pulses per device (required)"}
    DOC: ClassVar[str] = ("write-verify modelled by a published post-verify residual: the programming variation becomes "
                          "normal with sigma(g) of the curve (uS models); cost: the pulses per device you give")
    curve: str = "rram-milo"
    pulses: float = 0.0

    def __post_init__(self):
        if self.curve not in RESIDUALS:
            raise ModelSpecError(f"write-verify-residual curve must be one of {', '.join(RESIDUALS)}; got {self.curve!r}.")
        if isinstance(self.pulses, bool) or not isinstance(self.pulses, (int, float)) or not (self.pulses >= 1):
            raise ModelSpecError("write-verify-residual needs pulses=P, the mean pulses per device of your write-verify "
                                 f"scheme (at least 1; no published count exists to default to); got {self.pulses!r}.")

    def apply(self, design, context):
        from reliability.devices import Constant, Polynomial, ProgrammingVariation

        _no_verify_yet(design, str(self))
        model = design.spec.device_model()
        if model.unit != "uS":
            raise ModelSpecError(f"{self}: the residual curves are in uS and the device model's unit is {model.unit!r}; "
                                 "use write-verify:tolerance=t for weight- or level-unit models.")
        coef, x_scale, _ = RESIDUALS[self.curve]
        prog = ProgrammingVariation("normal", Constant(0.0), Polynomial(coef, x_scale=x_scale, lower=0.0))
        d = design.with_spec(device=model.with_(programming=prog, name=f"{model.name} + {self.curve} residual"))
        return replace(d, residual_pulses=float(self.pulses))


@dataclass(frozen=True)
class SelectiveWriteVerify(Mitigation):
    key: ClassVar[str] = "swim"
    UNITS: ClassVar[dict] = {"fraction": "fraction of all weights verified", "tolerance": WriteVerify.UNITS["tolerance"],
                             "select": "hessian | magnitude | random"}
    DOC: ClassVar[str] = ("selective write-verify (SWIM): the top fraction of weights by sensitivity verified, the "
                          "rest written once; fraction=1 is write-verify, fraction=0 the baseline")
    fraction: float = 0.1
    tolerance: float = 0.05
    select: str = "hessian"

    def __post_init__(self):
        from reliability.mitigation.selection import SELECTIONS

        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not (0 <= self.fraction <= 1):
            raise ModelSpecError(f"swim fraction must be in [0, 1]; got {self.fraction!r}.")
        _tolerance("swim tolerance", self.tolerance)
        if self.select not in SELECTIONS:
            raise ModelSpecError(f"swim select must be one of {', '.join(SELECTIONS)}; got {self.select!r}.")

    def apply(self, design, context):
        from reliability.mitigation.selection import top_fraction_mask, weight_scores

        _no_verify_yet(design, str(self))
        if self.fraction == 0:
            return design
        verified = replace(design.with_spec(write_verify=float(self.tolerance)), verify_mask=None)
        if self.fraction == 1:
            return verified
        sim = verified.simulator(threads=1)
        fx, fy = context.fit_data()
        scores = weight_scores(sim, fx, fy, self.select, rng=context.seed)
        mask = top_fraction_mask(scores, self.fraction)
        return replace(verified, verify_mask=tuple(mask))


@dataclass(frozen=True)
class Replicas(Mitigation):
    key: ClassVar[str] = "replicas"
    UNITS: ClassVar[dict] = {"n": "devices averaged per weight (per bit slice and sign)"}
    DOC: ClassVar[str] = "n devices per weight averaged (equal significance): sigma_w / sqrt(n) for independent errors; cost: n x devices"
    n: int = 2

    def __post_init__(self):
        _positive_int("replicas n", self.n, 1, 64)

    def apply(self, design, context):
        mp = design.spec.mapping
        return design.with_spec(mapping=replace(mp, devices_per_weight=mp.devices_per_weight * int(self.n)))


@dataclass(frozen=True)
class BitSlicing(Mitigation):
    key: ClassVar[str] = "slicing"
    UNITS: ClassVar[dict] = {"bits": "bits per device (m)", "weight_bits": "bits per weight (N; 0: keep the design's, else 8)"}
    DOC: ClassVar[str] = "N-bit integer weights on m-bit devices, slice i of significance 2^(i m); cost: ceil(N/m) x devices and ADC conversions"
    bits: int = 2
    weight_bits: int = 0

    def __post_init__(self):
        _positive_int("slicing bits", self.bits, 1, 16)
        _positive_int("slicing weight_bits", self.weight_bits, 0, 32)

    def apply(self, design, context):
        mp = design.spec.mapping
        wb = int(self.weight_bits) or mp.weight_bits or 8
        return design.with_spec(mapping=replace(mp, weight_bits=wb, device_bits=int(self.bits)))


@dataclass(frozen=True)
class Differential(Mitigation):
    key: ClassVar[str] = "differential"
    DOC: ClassVar[str] = "a device pair per weight (positive and negative part) instead of one device with a digital offset; cost: 2 x devices"

    def apply(self, design, context):
        return design.with_spec(mapping=replace(design.spec.mapping, scheme="differential"))


@dataclass(frozen=True)
class _ConverterBits(Mitigation):
    """A converter's resolution: sets the periphery field ``FIELD`` to ``bits``."""

    FIELD: ClassVar[str] = ""
    bits: int = 8

    def __post_init__(self):
        _positive_int(f"{self.key} bits", self.bits, 1, 16)

    def apply(self, design, context):
        return design.with_spec(periphery=replace(design.spec.periphery, **{self.FIELD: int(self.bits)}))


@dataclass(frozen=True)
class AdcPrecision(_ConverterBits):
    key: ClassVar[str] = "adc"
    FIELD: ClassVar[str] = "adc_bits"
    UNITS: ClassVar[dict] = {"bits": "ADC resolution, bits"}
    DOC: ClassVar[str] = "column outputs converted at b bits (per tile, slice and column); cost: SAR energy and area (NeuroSim model)"


@dataclass(frozen=True)
class DacPrecision(_ConverterBits):
    key: ClassVar[str] = "dac"
    FIELD: ClassVar[str] = "dac_bits"
    UNITS: ClassVar[dict] = {"bits": "input resolution, bits"}
    DOC: ClassVar[str] = "inputs quantized to b bits; cost: b bit-serial input cycles, each an ADC conversion per column"


@dataclass(frozen=True)
class SpareColumns(Mitigation):
    key: ClassVar[str] = "spare-columns"
    UNITS: ClassVar[dict] = {"n": "spare weight columns per tile"}
    DOC: ClassVar[str] = ("stuck-cell repair: on each chip the (at most n) weight columns of a tile with the most stuck "
                          "devices use fresh spare devices; cost: the spare columns' devices and one test read per device")
    n: int = 2

    def __post_init__(self):
        _positive_int("spare-columns n", self.n, 1, 4096)

    def apply(self, design, context):
        st = design.spec.device_model().stuck
        if st is None or (st.p_low == 0 and st.p_high == 0):
            raise ModelSpecError(f"{self}: the device model has no stuck-at faults, so spare columns repair nothing; "
                                 "use a model with stuck faults (a fitted one, or a preset with stuck=...).")
        mp = design.spec.mapping
        return design.with_spec(mapping=replace(mp, spare_cols=mp.spare_cols + int(self.n)))


@dataclass(frozen=True)
class DriftCompensation(Mitigation):
    key: ClassVar[str] = "drift-compensation"
    UNITS: ClassVar[dict] = {"period_s": "seconds between calibrations"}
    DOC: ClassVar[str] = ("global drift compensation per layer (aihwkit's GlobalDriftCompensation): outputs rescaled by a "
                          "calibration read; cost: one calibration MVM per tile per period")
    period_s: float = 86400.0

    def __post_init__(self):
        _period("drift-compensation period_s", self.period_s)

    def apply(self, design, context):
        d = design.with_spec(periphery=replace(design.spec.periphery, drift_compensation=True))
        return replace(d, calibration_period_s=float(self.period_s))


@dataclass(frozen=True)
class Refresh(Mitigation):
    key: ClassVar[str] = "refresh"
    UNITS: ClassVar[dict] = {"period_s": "seconds between reprogrammings"}
    DOC: ClassVar[str] = ("the chip reprogrammed every period: it is read at most period_s after programming (the "
                          "worst moment of the period is simulated); cost: the chip's write time once per period")
    period_s: float = 3600.0

    def __post_init__(self):
        _period("refresh period_s", self.period_s)

    def apply(self, design, context):
        d = design.with_spec(time_s=min(float(design.spec.time_s), float(self.period_s)))
        return replace(d, refresh_period_s=float(self.period_s))


@dataclass(frozen=True)
class NoiseAwareTraining(Mitigation):
    key: ClassVar[str] = "noise-training"
    UNITS: ClassVar[dict] = {"sigma": "injected noise std relative to each layer's max|W|", "noise": "gaussian | censored",
                             "censor": "censoring point of the censored noise, standard deviations",
                             "epochs": "training epochs", "lr": "Adam learning rate", "chips": "noisy copies per batch",
                             "batch": "samples per mini-batch"}
    DOC: ClassVar[str] = ("hardware-aware fine-tuning with injected weight noise (Gaussian, or right-censored Gaussian as "
                          "Yan et al. ICCAD'23) through the core's gradients, on the training data; cost: epochs")
    sigma: float = 0.1
    noise: str = "gaussian"
    censor: float = 1.0
    epochs: int = 10
    lr: float = 1e-3
    chips: int = 4
    batch: int = 32

    def __post_init__(self):
        from reliability.mitigation.training import NOISES

        if self.noise not in NOISES:
            raise ModelSpecError(f"noise-training noise must be one of {', '.join(NOISES)}; got {self.noise!r}.")
        for name in ("sigma", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and np.isfinite(v)):
                raise ModelSpecError(f"noise-training {name} must be a positive number; got {v!r}.")
        if isinstance(self.censor, bool) or not isinstance(self.censor, (int, float)) or not np.isfinite(self.censor):
            raise ModelSpecError(f"noise-training censor must be a number of standard deviations; got {self.censor!r}.")
        _positive_int("noise-training epochs", self.epochs, 1, 10000)
        _positive_int("noise-training chips", self.chips, 1, 1024)
        _positive_int("noise-training batch", self.batch, 1, 1 << 20)

    def apply(self, design, context):
        from reliability.mitigation.training import finetune

        if context.train_x is None:
            raise ModelSpecError("noise-training needs training data (never the evaluation set): pass train=(X, y) "
                                 "to rank(), or --train FILE.npz on the command line.")
        net, _ = finetune(design.network, context.train_x, context.train_y, sigma=float(self.sigma), noise=self.noise,
                          censor=float(self.censor), epochs=int(self.epochs), lr=float(self.lr), batch=int(self.batch),
                          chips=int(self.chips), rng=context.seed)
        return replace(design, network=net, training_epochs=design.training_epochs + int(self.epochs))


@dataclass(frozen=True)
class Combination(Mitigation):
    """Several mitigations applied left to right (``a + b``)."""

    items: tuple = field(default_factory=tuple)

    @property
    def parts(self):
        return tuple(self.items)

    def apply(self, design, context):
        for m in self.items:
            design = m.apply(design, context)
        return design

    def __str__(self) -> str:
        return " + ".join(str(m) for m in self.items) if self.items else "baseline"


#: The catalogue: key -> class.
CATALOGUE = {c.key: c for c in (WriteVerify, ResidualWriteVerify, SelectiveWriteVerify, Replicas, BitSlicing, Differential,
                                  AdcPrecision, DacPrecision, DriftCompensation, Refresh, NoiseAwareTraining,
                                  SpareColumns)}


def _value(text: str, default):
    if isinstance(default, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if isinstance(default, int):
        f = float(text)
        return int(f) if f == int(f) else f
    if isinstance(default, float):
        return float(text)
    return text


def parse_mitigation(spec) -> Mitigation:
    """A :class:`Mitigation` from a string (``"write-verify:tolerance=0.05"``, ``"swim:fraction=0.1
    + adc:bits=6"``, ``"baseline"``) or a Mitigation (returned as is)."""
    if isinstance(spec, Mitigation):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a mitigation must be a string like 'write-verify:tolerance=0.05'; got {spec!r}.")
    items = []
    for part in spec.split("+"):
        part = part.strip()
        name, _, params = part.partition(":")
        key = name.strip().lower().replace("_", "-")
        if key in ("baseline", "none"):
            if params.strip():
                raise ModelSpecError(f"{key!r} takes no parameters; got {part!r}.")
            continue
        cls = CATALOGUE.get(key)
        if cls is None:
            raise ModelSpecError(f"unknown mitigation {name.strip()!r} in {spec!r}; the catalogue has: "
                                 f"{', '.join(CATALOGUE)} (and 'baseline').")
        defaults = {f.name: f.default for f in fields(cls)}
        kw = {}
        for item in filter(None, (p.strip() for p in params.split(","))):
            k, eq, v = item.partition("=")
            k = k.strip()
            if not eq or k not in defaults:
                known = ", ".join(defaults) or "none"
                raise ModelSpecError(f"{cls.key}: {item!r} is not a parameter=value pair it knows; its parameters: {known}.")
            try:
                kw[k] = _value(v.strip(), defaults[k])
            except ValueError:
                raise ModelSpecError(f"{cls.key}: {k}={v.strip()!r} is not a valid {type(defaults[k]).__name__}.") from None
        items.append(cls(**kw))
    if len(items) == 1:
        return items[0]
    return Combination(tuple(items))
