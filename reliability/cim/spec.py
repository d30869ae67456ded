"""The chip specification: mapping, device model and periphery in one versioned file.

A user can write it by hand, as TOML or JSON; every field has a unit and a default::

    schema = "nvcim-reliability/chip"
    version = 1

    [device]
    model = "pcm"            # preset name (with parameters: "pcm:g_max=25"), or a device JSON path
    time_s = 86400.0         # read (inference) time, seconds after programming

    [mapping]
    scheme = "differential"  # "differential" (a device pair per weight) or "offset" (one device,
                             #  digital subtraction of the mid-range code)
    weight_bits = 0          # 0: analog weights (no quantization); N: signed N-bit integer weights
    scale = "per-layer"      # quantization/normalization scale: "per-layer" or "per-column" max |W|
    device_bits = 0          # 0: one device holds the whole magnitude; m: bit slices of m bits,
                             #  slice i has significance 2^(i m) (LSB first)
    devices_per_weight = 1   # replicas per slice device, averaged
    g_min_uS = "model"       # conductance range; "model" takes the device model's g_range
    g_max_uS = "model"
    tile_rows = 256          # crossbar tile size (rows x columns)
    tile_cols = 256
    spare_cols = 0           # spare columns per tile: on each chip the weight columns with the most
                             #  stuck devices in a tile (at most this many) use fresh spare devices

    [programming]
    write_verify = 0.0       # 0: devices written once; t > 0: write-verify, every device reprogrammed
                             #  until |g - target| <= t x (g_max - g_min) (see reliability.devices.verify)

    [periphery]
    dac_bits = 0             # 0: ideal inputs; b: signed b-bit input quantization per layer
    dac_range = "calibrate"  # "calibrate" (max |x| on the calibration inputs) or a number
    adc_bits = 0             # 0: ideal; b: signed b-bit ADC per tile column and bit slice
    adc_range = "calibrate"  # "max" (full scale of the tile), "calibrate" (max on calibration
                             #  inputs with the clean weights) or "percentile"
    adc_percentile = 99.99   # for adc_range = "percentile", percent
    drift_compensation = false  # global drift compensation per layer (as aihwkit's
                                # GlobalDriftCompensation): outputs rescaled by
                                # sum|ones @ W(t0)| / sum|ones @ W(t)|, W(t0) read on the same chip

    [simulation]
    dtype = "float32"        # or "float64"
    memory_budget_MB = 2048  # chips are evaluated in chunks that fit this budget

Shorthands accepted wherever a chip specification is expected (``--variation``):
``weight-gaussian:sigma=S`` (additive Gaussian noise, std S x max|W_layer| on every analog weight,
biases exact; see the case README in ``reliability/bench/cases/digits_mlp_s05``) and ``multi-device:weight_bits=N,device_bits=m,sigma=S``
(N-bit weights on m-bit devices, each device's level + N(0, S^2) in level spacings).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from reliability._json import write_json
from reliability.devices import DeviceModel, load_device
from reliability.errors import ModelSpecError, option

__all__ = ["ChipSpec", "MappingSpec", "PeripherySpec", "parse_variation", "CHIP_SCHEMA", "CHIP_SCHEMA_VERSION"]

CHIP_SCHEMA = "nvcim-reliability/chip"
CHIP_SCHEMA_VERSION = 1


def _bits(name: str, v, hi: int = 32) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not (0 <= v <= hi):
        raise ModelSpecError(f"{name} must be a whole number from 0 (off) to {hi}; got {v!r}.")
    return int(v)


@dataclass(frozen=True)
class MappingSpec:
    scheme: str = "differential"
    weight_bits: int = 0
    scale: str = "per-layer"
    device_bits: int = 0
    devices_per_weight: int = 1
    g_min_uS: float | str = "model"
    g_max_uS: float | str = "model"
    tile_rows: int = 256
    tile_cols: int = 256
    spare_cols: int = 0

    def __post_init__(self):
        if self.scheme not in ("differential", "offset"):
            raise ModelSpecError(f"mapping.scheme must be 'differential' or 'offset'; got {self.scheme!r}.")
        if self.scale not in ("per-layer", "per-column"):
            raise ModelSpecError(f"mapping.scale must be 'per-layer' or 'per-column'; got {self.scale!r}.")
        _bits("mapping.weight_bits", self.weight_bits)
        _bits("mapping.device_bits", self.device_bits, 16)
        if self.device_bits and not self.weight_bits:
            raise ModelSpecError("mapping.device_bits needs mapping.weight_bits (bit slicing splits an integer "
                                 "weight); set weight_bits, or device_bits = 0.")
        if self.weight_bits == 1 and self.scheme == "differential":
            raise ModelSpecError("mapping.weight_bits = 1 leaves no magnitude bit with a sign; use 2 or more.")
        for name in ("devices_per_weight", "tile_rows", "tile_cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ModelSpecError(f"mapping.{name} must be a positive integer; got {v!r}.")
        v = self.spare_cols
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ModelSpecError(f"mapping.spare_cols must be a whole number >= 0; got {v!r}.")
        for name in ("g_min_uS", "g_max_uS"):
            v = getattr(self, name)
            if v != "model" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ModelSpecError(f"mapping.{name} must be a number (uS) or \"model\"; got {v!r}.")


@dataclass(frozen=True)
class PeripherySpec:
    dac_bits: int = 0
    dac_range: str | float = "calibrate"
    adc_bits: int = 0
    adc_range: str = "calibrate"
    adc_percentile: float = 99.99
    drift_compensation: bool = False

    def __post_init__(self):
        _bits("periphery.dac_bits", self.dac_bits)
        _bits("periphery.adc_bits", self.adc_bits)
        if not (self.dac_range == "calibrate" or (isinstance(self.dac_range, (int, float)) and self.dac_range > 0)):
            raise ModelSpecError(f"periphery.dac_range must be \"calibrate\" or a positive number; got {self.dac_range!r}.")
        if self.adc_range not in ("max", "calibrate", "percentile"):
            raise ModelSpecError(f"periphery.adc_range must be 'max', 'calibrate' or 'percentile'; got {self.adc_range!r}.")
        if not (0 < float(self.adc_percentile) <= 100):
            raise ModelSpecError(f"periphery.adc_percentile must be in (0, 100]; got {self.adc_percentile!r}.")


@dataclass(frozen=True)
class ChipSpec:
    """Mapping + device model + periphery of a simulated chip (see the module docstring)."""

    device: Any = "weight-gaussian:sigma=0.1"
    time_s: float = 0.0
    mapping: MappingSpec = field(default_factory=MappingSpec)
    periphery: PeripherySpec = field(default_factory=PeripherySpec)
    dtype: str = "float32"
    memory_budget_MB: float = 2048.0
    name: str = ""
    write_verify: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.time_s, (int, float)) and self.time_s >= 0):
            raise ModelSpecError(f"device.time_s must be a non-negative number of seconds; got {self.time_s!r}.")
        wv = self.write_verify
        if isinstance(wv, bool) or not isinstance(wv, (int, float)) or not (0 <= wv < 1):
            raise ModelSpecError(f"programming.write_verify must be a tolerance in [0, 1) (a fraction of the "
                                 f"conductance range; 0 = off); got {wv!r}.")
        if self.dtype not in ("float32", "float64"):
            raise ModelSpecError(f"simulation.dtype must be 'float32' or 'float64'; got {self.dtype!r}.")
        if not (self.memory_budget_MB > 0):
            raise ModelSpecError(f"simulation.memory_budget_MB must be positive; got {self.memory_budget_MB!r}.")

    def device_model(self) -> DeviceModel:
        return load_device(self.device)

    def with_(self, **changes) -> "ChipSpec":
        return replace(self, **changes)

    # -------------------------------------------------------------- files
    def to_dict(self) -> dict:
        dev = self.device.to_dict() if isinstance(self.device, DeviceModel) else self.device
        d = {"schema": CHIP_SCHEMA, "version": CHIP_SCHEMA_VERSION, "name": self.name,
             "device": {"model": dev, "time_s": float(self.time_s)}, "mapping": asdict(self.mapping),
             "periphery": asdict(self.periphery),
             "simulation": {"dtype": self.dtype, "memory_budget_MB": float(self.memory_budget_MB)}}
        if self.write_verify:
            d["programming"] = {"write_verify": float(self.write_verify)}
        return d

    def save(self, path, overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass {option('overwrite')} or choose another path.")
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, where: str = "chip specification") -> "ChipSpec":
        if not isinstance(d, dict):
            raise ModelSpecError(f"{where}: expected a table/object; got {type(d).__name__}.")
        if d.get("schema") != CHIP_SCHEMA:
            raise ModelSpecError(f"{where}: 'schema' must be {CHIP_SCHEMA!r}; got {d.get('schema')!r}.")
        if d.get("version") != CHIP_SCHEMA_VERSION:
            raise ModelSpecError(f"{where}: version {d.get('version')!r} is not supported (this release reads "
                                 f"version {CHIP_SCHEMA_VERSION}).")
        known = {"schema", "version", "name", "device", "mapping", "periphery", "simulation", "programming"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelSpecError(f"{where}: unknown sections {unknown}; known: {sorted(known)}.")
        dev = dict(d.get("device", {}))
        model = dev.pop("model", "weight-gaussian:sigma=0.1")
        time_s = dev.pop("time_s", 0.0)
        if dev:
            raise ModelSpecError(f"{where}: unknown fields in [device]: {sorted(dev)}; known: model, time_s.")
        if isinstance(model, dict):
            model = DeviceModel.from_dict(model)
        sim = dict(d.get("simulation", {}))
        kw = {}
        for section, klass in (("mapping", MappingSpec), ("periphery", PeripherySpec)):
            sec = dict(d.get(section, {}))
            fields = set(klass.__dataclass_fields__)
            bad = sorted(set(sec) - fields)
            if bad:
                raise ModelSpecError(f"{where}: unknown fields in [{section}]: {bad}; known: {sorted(fields)}.")
            kw[section] = klass(**sec)
        bad = sorted(set(sim) - {"dtype", "memory_budget_MB"})
        if bad:
            raise ModelSpecError(f"{where}: unknown fields in [simulation]: {bad}; known: dtype, memory_budget_MB.")
        prog = dict(d.get("programming", {}))
        bad = sorted(set(prog) - {"write_verify"})
        if bad:
            raise ModelSpecError(f"{where}: unknown fields in [programming]: {bad}; known: write_verify.")
        return cls(device=model, time_s=float(time_s), name=str(d.get("name", "")),
                   write_verify=prog.get("write_verify", 0.0),
                   dtype=sim.get("dtype", "float32"), memory_budget_MB=float(sim.get("memory_budget_MB", 2048.0)), **kw)

    @classmethod
    def load(cls, path) -> "ChipSpec":
        path = Path(path)
        if not path.exists():
            raise ModelSpecError(f"chip specification {path} does not exist.")
        text = path.read_text()
        try:
            d = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ModelSpecError(f"{path} cannot be parsed: {exc}") from None
        return cls.from_dict(d, where=str(path))


def parse_variation(spec) -> ChipSpec:
    """A :class:`ChipSpec` from a ChipSpec, a shorthand string, or a .toml/.json chip file.

    ``weight-gaussian:sigma=S`` and ``multi-device:weight_bits=N,device_bits=m,sigma=S`` are the
    weight-level models of Yan et al.; any other device preset name gives that device with the
    default mapping; a path ending in .toml/.json is read as a chip specification.
    """
    if isinstance(spec, ChipSpec):
        return spec
    if isinstance(spec, DeviceModel):
        return ChipSpec(device=spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a variation must be a shorthand (e.g. weight-gaussian:sigma=0.1) or a chip file; got {spec!r}.")
    s = spec.strip()
    if s.lower().endswith((".toml", ".json")):
        path = Path(s)
        if path.suffix.lower() == ".json" and path.exists():
            d = json.loads(path.read_text())
            if d.get("schema") == "nvcim-reliability/device-model":
                return ChipSpec(device=DeviceModel.from_dict(d))
        return ChipSpec.load(path)
    name, _, params = s.partition(":")
    key = name.strip().lower().replace("_", "-")
    if key == "multi-device":
        model = load_device(s)
        md = model.metadata
        return ChipSpec(device=model, mapping=MappingSpec(weight_bits=int(md["weight_bits"]),
                                                          device_bits=int(md["device_bits"])))
    return ChipSpec(device=load_device(s))
