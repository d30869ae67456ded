"""What a mitigated chip costs: a vector of quantities with units, and one scalar under the user's
weights.

The costs are computed from the *design* a candidate ends up with (its chip specification, which
weights are write-verified, its refresh and calibration periods, its training), not summed per
mitigation: a combination is costed once, so ``write-verify + replicas:n=2`` verifies twice the
devices and ``adc:bits=6 + slicing:bits=2`` converts every slice at 6 bits.  Where effects do add up
(write time and ADC energy of separate parts of a design) the vector adds them.

The unit costs and their sources live in ``costs.toml`` beside this module (:meth:`CostModel.default`);
a user file of the same form overrides any of them (:meth:`CostModel.load`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from reliability.errors import ModelSpecError

__all__ = ["CostModel", "Cost", "COST_UNITS", "design_costs"]

COSTS_SCHEMA = "nvcim-reliability/costs"
COSTS_VERSION = 1
DEFAULT_COSTS = Path(__file__).resolve().parent / "costs.toml"

#: Every entry of the cost vector and its unit (per chip unless said otherwise).
COST_UNITS = MappingProxyType({
    "devices": "devices per chip (spare columns included)",
    "devices_per_weight": "devices per weight (mean)",
    "array_area_mm2": "mm^2 of device array per chip",
    "write_pulses": "expected write pulses per chip (verify reads included in the time)",
    "write_time_s": "s to program one chip",
    "adc_bits": "bits per ADC conversion (0: ideal, not costed)",
    "adc_conversions": "ADC conversions per inference",
    "adc_energy_nJ": "nJ of ADC energy per inference",
    "adc_transistors": "minimum-size transistor equivalents of all ADCs of the chip",
    "calibration_conversions_per_day": "ADC conversions per day spent on drift-compensation reads",
    "refresh_write_time_s_per_day": "s per day spent reprogramming (periodic refresh)",
    "training_epochs": "epochs of hardware-aware fine-tuning (once per network)",
})

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class CostModel:
    """Unit costs (``constants``: name -> (value, unit, source)) and scalarization ``weights``."""

    constants: MappingProxyType
    weights: MappingProxyType
    path: str = ""

    def value(self, name: str) -> float:
        return float(self.constants[name][0])

    @classmethod
    def default(cls) -> "CostModel":
        """The shipped cost file (``reliability/mitigation/costs.toml``)."""
        return cls._from_text(DEFAULT_COSTS.read_text(), str(DEFAULT_COSTS))

    @classmethod
    def load(cls, path) -> "CostModel":
        """The shipped costs with the constants and weights of the TOML file ``path`` replacing theirs."""
        path = Path(path)
        if not path.exists():
            raise ModelSpecError(f"cost file {path} does not exist; give a TOML file like the shipped {DEFAULT_COSTS.name}.")
        return cls.default().merged(cls._parse(path.read_text(), str(path)), str(path))

    def merged(self, other: dict, where: str) -> "CostModel":
        consts = dict(self.constants)
        for name, entry in other.get("constants", {}).items():
            if name not in consts:
                raise ModelSpecError(f"{where}: unknown cost constant {name!r}; known: {sorted(consts)}.")
            consts[name] = entry
        weights = dict(self.weights)
        for name, w in other.get("weights", {}).items():
            weights[name] = w
        return CostModel(MappingProxyType(consts), MappingProxyType(weights), where)

    @classmethod
    def _from_text(cls, text: str, where: str) -> "CostModel":
        d = cls._parse(text, where)
        return CostModel(MappingProxyType(d.get("constants", {})), MappingProxyType(d.get("weights", {})), where)

    @staticmethod
    def _parse(text: str, where: str) -> dict:
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ModelSpecError(f"{where} is not valid TOML: {exc}") from None
        if d.get("schema") != COSTS_SCHEMA:
            raise ModelSpecError(f"{where}: 'schema' must be {COSTS_SCHEMA!r}; got {d.get('schema')!r}.")
        if d.get("version") != COSTS_VERSION:
            raise ModelSpecError(f"{where}: cost file version {d.get('version')!r} is not supported (this release "
                                 f"reads version {COSTS_VERSION}).")
        unknown = sorted(set(d) - {"schema", "version", "constants", "weights"})
        if unknown:
            raise ModelSpecError(f"{where}: unknown sections {unknown}; known: constants, weights.")
        consts = {}
        for name, entry in d.get("constants", {}).items():
            if not isinstance(entry, dict) or set(entry) != {"value", "unit", "source"}:
                raise ModelSpecError(f"{where}: [constants.{name}] needs exactly value, unit and source "
                                     "(no number without its source).")
            v = entry["value"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ModelSpecError(f"{where}: constants.{name}.value must be a non-negative number; got {v!r}.")
            if not str(entry["source"]).strip():
                raise ModelSpecError(f"{where}: constants.{name}.source is empty; say where the number comes from.")
            consts[name] = (float(v), str(entry["unit"]), str(entry["source"]))
        weights = {}
        for name, w in d.get("weights", {}).items():
            if name not in COST_UNITS:
                raise ModelSpecError(f"{where}: [weights] {name!r} is not a cost entry; known: {sorted(COST_UNITS)}.")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ModelSpecError(f"{where}: weights.{name} must be a non-negative number; got {w!r}.")
            weights[name] = float(w)
        return {"constants": consts, "weights": weights}

    def adc_energy_J(self, bits: int) -> float:
        """Energy of one ``bits``-bit SAR conversion: ``(a b + c) uW x (b + 1) x t_bit``."""
        if not bits:
            return 0.0
        power = (self.value("adc_energy_a_uW") * bits + self.value("adc_energy_c_uW")) * 1e-6
        return power * (bits + 1) * self.value("adc_conversion_ns_per_bit") * 1e-9

    def adc_transistors(self, bits: int) -> float:
        """Minimum-size transistor equivalents of one ``bits``-bit SAR ADC."""
        if not bits:
            return 0.0
        return (self.value("adc_nmos_base") + self.value("adc_nmos_per_bit") * (bits - 1)
                + self.value("adc_pmos_base") + self.value("adc_pmos_per_bit") * (bits - 1))


@dataclass(frozen=True)
class Cost:
    """One design's cost vector (``values``, units in :data:`COST_UNITS`) and its weighted ``scalar``."""

    values: dict = field(default_factory=dict)
    scalar: float = 0.0

    def to_dict(self) -> dict:
        d = {k: {"value": float(v), "unit": COST_UNITS[k]} for k, v in self.values.items()}
        d["scalar"] = float(self.scalar)
        return d


def design_costs(design, simulator, rows_per_inference: list[int], costs: CostModel) -> Cost:
    """The cost vector of ``design`` built as ``simulator``.

    ``rows_per_inference``: per analog layer, the input vectors one inference (one sample) sends
    through it (1 for a dense layer, the output positions for a convolution).
    """
    spec = simulator.spec
    n_weights = sum(m.K * m.N for m in simulator.maps)
    n_spare = sum(m.spare_devices(spec.mapping.spare_cols) for m in simulator.maps) if spec.mapping.spare_cols else 0
    n_dev = simulator.n_devices + n_spare
    v = {"devices": float(n_dev), "devices_per_weight": n_dev / max(n_weights, 1)}
    F = costs.value("feature_size_nm") * 1e-6                      # mm
    v["array_area_mm2"] = n_dev * costs.value("cell_area_F2") * F * F
    # writes: one pulse per device written once; 1 / P(band) expected attempts, each a pulse and a
    # verify read, per write-verified device (reliability.devices.verify)
    verified = [p.accept for p in simulator.prepared if p.accept is not None]
    n_ver = sum(a.n_verified for a in verified)
    attempts = sum(a.expected_attempts() for a in verified)
    n_used = simulator.n_devices           # spares are written only in place of a repaired column
    if design.residual_pulses:             # write-verify given as a residual: its pulses per device
        n_ver, attempts = n_used, n_used * design.residual_pulses
    pulses = (n_used - n_ver) + attempts
    v["write_pulses"] = pulses
    t_pulse, t_read = costs.value("write_pulse_s"), costs.value("verify_read_s")
    # spare columns need the stuck devices found: one test read per device not verified already
    tests = (n_used - n_ver) if spec.mapping.spare_cols else 0
    v["write_time_s"] = (((n_used - n_ver) * t_pulse + attempts * (t_pulse + t_read) + tests * t_read)
                         / max(costs.value("parallel_writes"), 1.0))
    # ADC: one conversion per column, bit slice, tile and input vector; bit-serial inputs (NeuroSim)
    # take one cycle per DAC bit
    per = spec.periphery
    cycles = per.dac_bits if per.dac_bits else 1
    tile_cols = conv = 0.0
    for m, rows in zip(simulator.maps, rows_per_inference):
        tiles = -(-m.K // spec.mapping.tile_rows)
        cols = tiles * m.N * len(m.sig)
        tile_cols += cols
        conv += cols * rows * cycles
    v["adc_bits"] = float(per.adc_bits)
    v["adc_conversions"] = conv if per.adc_bits else 0.0
    v["adc_energy_nJ"] = v["adc_conversions"] * costs.adc_energy_J(per.adc_bits) * 1e9
    n_adc = math.ceil(tile_cols / costs.value("columns_per_adc")) if per.adc_bits else 0
    v["adc_transistors"] = n_adc * costs.adc_transistors(per.adc_bits)
    cal = design.calibration_period_s
    v["calibration_conversions_per_day"] = (tile_cols * SECONDS_PER_DAY / cal) if (per.drift_compensation and cal) else 0.0
    ref = design.refresh_period_s
    v["refresh_write_time_s_per_day"] = v["write_time_s"] * SECONDS_PER_DAY / ref if ref else 0.0
    v["training_epochs"] = float(design.training_epochs)
    scalar = float(sum(costs.weights.get(k, 0.0) * x for k, x in v.items()))
    return Cost({k: float(np.float64(x)) for k, x in v.items()}, scalar)
