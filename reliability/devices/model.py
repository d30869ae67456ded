"""The device model: what conductance a device programmed to a target has when read at time t.

:class:`DeviceModel` composes the optional parts of :mod:`reliability.devices.components` in a
fixed physical order::

    stuck?  --no-->  g0 = programming(target)        (device-to-device / cycle-to-cycle)
                     g(t) = g0 * (t/t0)^-nu          (drift, nu per device)
                     g(t) += |g(t)| * read noise      (fresh per read)
    stuck?  --yes--> g = g_low or g_high (+ spread)  (ignores target, does not drift)
    every device     g *= chip gain                   (one draw per chip)

Conductances are floored at ``floor`` (0 uS by default: a conductance cannot be negative, as in
aihwkit's PCM model); set ``floor=None`` to disable.  Models save to and load from a versioned
JSON document (``SCHEMA``/``SCHEMA_VERSION``); no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from reliability._json import atomic_output, jsonable
from reliability.devices.components import (
    ChipGain, Drift, EmpiricalVariation, ProgrammingVariation, ReadNoise, StuckAt, programming_from_dict,
)
from reliability.devices.state import doc_number, doc_text
from reliability.errors import ModelSpecError, option
from reliability.streams import as_generator

__all__ = ["DeviceModel", "ProgrammedDevices", "SCHEMA", "SCHEMA_VERSION", "UNITS"]

SCHEMA = "nvcim-reliability/device-model"
SCHEMA_VERSION = 1
#: Units a model may be expressed in.  ``uS``: conductance models.  ``w_max``: weight-level
#: models, relative to the largest absolute weight of a layer.  ``level``: multi-level device
#: models in units of the level spacing (levels 0 .. 2^bits - 1).
UNITS = ("uS", "w_max", "level")


@dataclass(frozen=True)
class ProgrammedDevices:
    """Devices after programming, before any read: everything that stays fixed between reads."""

    target: np.ndarray
    g0: np.ndarray
    nu: np.ndarray | None
    stuck_state: np.ndarray | None
    stuck_value: np.ndarray | None
    gain: np.ndarray  # broadcastable to target


@dataclass(frozen=True)
class DeviceModel:
    """A composable, serializable device-variation model.

    Parameters
    ----------
    name, description, source : str
        Identification and provenance (a paper, a data file and fit settings).
    unit : {"uS", "w_max", "level"}
        Unit of targets and conductances (see ``UNITS``).
    programming : ProgrammingVariation or EmpiricalVariation or None
        Programming variation; ``None`` means the device lands exactly on its target.
    drift, read_noise, stuck, chip_gain : optional parts
    g_range : (float, float) or None
        The programmable range [g_min, g_max] in ``unit``; used by mappings and shown to users.
    floor : float or None
        Physical lower bound applied to programmed and read values (default 0).
    metadata : dict
        Fit provenance: estimates' standard errors, data summary, diagnostics.
    """

    name: str = "custom"
    unit: str = "uS"
    programming: ProgrammingVariation | EmpiricalVariation | None = None
    drift: Drift | None = None
    read_noise: ReadNoise | None = None
    stuck: StuckAt | None = None
    chip_gain: ChipGain | None = None
    g_range: tuple[float, float] | None = None
    floor: float | None = 0.0
    description: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    #: A subclass whose JSON documents carry an extra top-level entry names it here (the
    #: posterior model: ``"posterior"``); :meth:`load` then builds that subclass, with
    #: ``from_dict(d, base_dir=<the file's folder>)``.  Subclasses register themselves when they are
    #: defined, so this module never imports them.
    document_key: ClassVar[str | None] = None
    _document_kinds: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        key = cls.__dict__.get("document_key")
        if key:
            DeviceModel._document_kinds[key] = cls

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ModelSpecError(f"DeviceModel.unit must be one of {UNITS}; got {self.unit!r}.")
        if self.g_range is not None:
            try:
                lo, hi = (float(v) for v in self.g_range)
            except (TypeError, ValueError, OverflowError):
                lo = hi = float("nan")
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi and np.isfinite(hi - lo)):
                raise ModelSpecError(f"DeviceModel.g_range must be (g_min, g_max), two finite numbers with g_min < "
                                     f"g_max; got {self.g_range!r}.")
            object.__setattr__(self, "g_range", (lo, hi))
        if self.floor is not None:
            try:
                floor = float(self.floor)
            except (TypeError, ValueError, OverflowError):
                floor = float("nan")
            if isinstance(self.floor, bool) or not np.isfinite(floor):
                raise ModelSpecError(f"DeviceModel.floor must be a finite number (the lowest conductance, usually 0) "
                                     f"or None for no floor; got {self.floor!r}.")
            object.__setattr__(self, "floor", floor)
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Scales and spreads must not go negative where the model is used: over its g_range (or at
        0 and 1 without one)."""
        grid = np.linspace(*self.g_range, 33) if self.g_range is not None else np.array([0.0, 1.0])
        checks = []
        if isinstance(self.programming, ProgrammingVariation):
            checks.append(("programming.scale", self.programming.scale))
        if self.drift is not None:
            checks.append(("drift.nu_std", self.drift.nu_std))
        if self.read_noise is not None:
            checks.append(("read_noise.q", self.read_noise.q))
        for name, fn in checks:
            with np.errstate(all="ignore"):
                v = np.asarray(fn(grid), dtype=float)
            bad = ~(np.isfinite(v) & (v >= 0))
            if np.any(bad):
                i = int(np.argmax(bad))
                raise ModelSpecError(f"{name} is {v[i]:.4g} at {grid[i]:.4g} {self.unit}: a spread must be finite and "
                                     "non-negative over the model's conductance range; fix the coefficients (or give "
                                     "a polynomial its lower bound 0).")

    # ------------------------------------------------------------------ sampling
    def program(self, target, rng=None, *, gain=None) -> ProgrammedDevices:
        """Program devices to ``target`` (any shape).  ``gain`` broadcasts against ``target``."""
        rng = as_generator(rng)
        target = np.asarray(target, dtype=float)
        if not np.all(np.isfinite(target)):
            raise ModelSpecError("target conductances must be finite; got NaN or inf.")
        g0 = self.programming.sample(target, rng) if self.programming is not None else target.copy()
        if self.floor is not None:
            g0 = np.maximum(g0, self.floor)
        nu = self.drift.draw_nu(target, rng) if self.drift is not None else None
        if self.stuck is not None and (self.stuck.p_low > 0 or self.stuck.p_high > 0):
            state = self.stuck.draw_state(target.shape, rng)
            value = self.stuck.values(state, rng)
        else:
            state = value = None
        if gain is None:
            gain = np.ones(())
        return ProgrammedDevices(target, g0, nu, state, value, np.asarray(gain, dtype=float))

    def read(self, programmed: ProgrammedDevices, time_s: float = 0.0, rng=None) -> np.ndarray:
        """Read programmed devices at ``time_s`` seconds after programming (fresh read noise)."""
        rng = as_generator(rng)
        time_s = float(time_s)
        if not (np.isfinite(time_s) and time_s >= 0):
            raise ModelSpecError(f"time_s must be a non-negative number of seconds; got {time_s!r}.")
        g = programmed.g0
        if self.drift is not None:
            g = self.drift.apply(g, programmed.nu, time_s)
        if self.read_noise is not None:
            g = self.read_noise.apply(g, programmed.target, time_s, rng)
        if programmed.stuck_state is not None:
            g = np.where(programmed.stuck_state > 0, programmed.stuck_value, g)
        if self.floor is not None:
            g = np.maximum(g, self.floor)
        return g * programmed.gain

    def sample(self, target, time_s: float = 0.0, size=None, rng=None) -> np.ndarray:
        """Conductances of random devices, **each on its own random chip**, read at ``time_s``.

        ``target`` broadcasts to ``size`` (default: ``target``'s shape).  Use
        :meth:`sample_chips` for many devices sharing a chip.
        """
        rng = as_generator(rng)
        target = np.asarray(target, dtype=float)
        if size is not None:
            target = np.broadcast_to(target, size)
        gain = self.chip_gain.draw(target.shape, rng) if self.chip_gain is not None else None
        return self.read(self.program(target, rng, gain=gain), time_s, rng)

    def sample_chips(self, target, n_chips: int, time_s: float = 0.0, rng=None) -> np.ndarray:
        """``n_chips`` chips of devices programmed to ``target``: shape ``(n_chips, *target.shape)``."""
        rng = as_generator(rng)
        if int(n_chips) != n_chips or n_chips < 1:
            raise ModelSpecError(f"n_chips must be a positive integer; got {n_chips!r}.")
        target = np.asarray(target, dtype=float)
        full = np.broadcast_to(target, (int(n_chips),) + target.shape)
        gain = None
        if self.chip_gain is not None:
            gain = self.chip_gain.draw(int(n_chips), rng).reshape((int(n_chips),) + (1,) * target.ndim)
        return self.read(self.program(full, rng, gain=gain), time_s, rng)

    # ------------------------------------------------------------------ summaries
    def std_programming(self, target) -> np.ndarray:
        """Standard deviation of the programming variation alone at ``target``."""
        if self.programming is None:
            return np.zeros(np.shape(target))
        return self.programming.std(target)

    def describe(self) -> str:
        """A human-readable description with every parameter's unit."""
        from reliability.devices.describe import describe

        return describe(self)

    def with_(self, **changes) -> "DeviceModel":
        """A copy with some fields replaced (models are immutable)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA, "version": SCHEMA_VERSION, "name": self.name, "unit": self.unit,
            "description": self.description, "source": self.source,
            "g_range": None if self.g_range is None else list(self.g_range), "floor": self.floor,
            "programming": None if self.programming is None else self.programming.to_dict(),
            "drift": None if self.drift is None else self.drift.to_dict(),
            "read_noise": None if self.read_noise is None else self.read_noise.to_dict(),
            "stuck": None if self.stuck is None else self.stuck.to_dict(),
            "chip_gain": None if self.chip_gain is None else self.chip_gain.to_dict(),
        }
        if self.metadata:
            d["metadata"] = jsonable(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeviceModel":
        if not isinstance(d, dict):
            raise ModelSpecError(f"a device model must be a JSON object; got {type(d).__name__}.")
        if "posterior" in d and cls is DeviceModel:
            raise ModelSpecError("this device model carries posterior draws in a file beside its JSON document; load it "
                                 "from its file (DeviceModel.load(path) or load_device(path)) so that the file is found.")
        if d.get("schema") != SCHEMA:
            raise ModelSpecError(f"not a device model: 'schema' is {d.get('schema')!r}, expected {SCHEMA!r}.")
        version = d.get("version")
        if isinstance(version, str) and version.strip() == str(SCHEMA_VERSION):
            raise ModelSpecError(f"device model 'version' must be the number {SCHEMA_VERSION}, not the string {version!r}; "
                                 f"write \"version\": {SCHEMA_VERSION}.")
        if isinstance(version, bool) or version != SCHEMA_VERSION:
            raise ModelSpecError(
                f"device model schema version {version!r} is not supported by this release (which reads version "
                f"{SCHEMA_VERSION}); upgrade nvcim-reliability or re-export the model."
            )
        known = {"schema", "version", "name", "unit", "description", "source", "g_range", "floor", "programming",
                 "drift", "read_noise", "stuck", "chip_gain", "metadata"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelSpecError(f"device model has unknown fields {unknown}; known fields are {sorted(known)}.")
        g_range = d.get("g_range")
        if g_range is not None and (not isinstance(g_range, list) or len(g_range) != 2):
            raise ModelSpecError(f"g_range must be a list of two numbers [g_min, g_max] (or null); got {g_range!r}.")
        metadata = d.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ModelSpecError(f"metadata must be an object (or null); got {metadata!r}.")
        floor = d.get("floor", 0.0)
        return cls(
            name=doc_text(d.get("name", "custom"), "name"), unit=doc_text(d.get("unit", "uS"), "unit"),
            description=doc_text(d.get("description") or "", "description"),
            source=doc_text(d.get("source") or "", "source"),
            g_range=None if g_range is None else tuple(doc_number(v, f"g_range[{i}]") for i, v in enumerate(g_range)),
            floor=None if floor is None else doc_number(floor, "floor"),
            programming=None if d.get("programming") is None else programming_from_dict(d["programming"]),
            drift=None if d.get("drift") is None else Drift.from_dict(d["drift"]),
            read_noise=None if d.get("read_noise") is None else ReadNoise.from_dict(d["read_noise"]),
            stuck=None if d.get("stuck") is None else StuckAt.from_dict(d["stuck"]),
            chip_gain=None if d.get("chip_gain") is None else ChipGain.from_dict(d["chip_gain"]),
            metadata=dict(metadata),
        )

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the model as JSON.  Refuses to overwrite an existing file unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass {option('overwrite')} or choose another path.")
        with atomic_output(path) as tmp:
            tmp.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path) -> "DeviceModel":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelSpecError(f"device model file {path} does not exist; give a JSON file or a preset name.") from None
        except json.JSONDecodeError as exc:
            raise ModelSpecError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}.") from None
        except UnicodeDecodeError as exc:
            raise ModelSpecError(f"{path} is not UTF-8 text (undecodable byte at offset {exc.start}); a device model "
                                 "is a JSON file written by DeviceModel.save.") from None
        except OSError as exc:
            raise ModelSpecError(f"device model file {path} cannot be read ({exc.strerror or exc}); give a readable "
                                 "JSON file or a preset name.") from None
        except (ValueError, RecursionError) as exc:  # a number with thousands of digits, nesting too deep
            raise ModelSpecError(f"{path} is not a usable JSON document ({exc}); a device model is a JSON file "
                                 "written by DeviceModel.save.") from None
        if isinstance(d, dict):
            for key, kind in DeviceModel._document_kinds.items():
                if key in d:
                    return kind.from_dict(d, base_dir=path.parent)
        return cls.from_dict(d)

