"""Synthetic measurement campaigns drawn from a device model, in the long measurement format.

This module owns the simulation of a measurement campaign (chips x target levels x devices x read
times) from a :class:`reliability.devices.DeviceModel`; it is how fits and readers are tested
against data whose truth is known.
"""

from __future__ import annotations

import operator

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from reliability.errors import ModelSpecError, ReliabilityError

if TYPE_CHECKING:
    from reliability.devices.model import DeviceModel

__all__ = ["simulate_campaign"]


def _count(name: str, value) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise ReliabilityError(f"{name} must be a positive integer; got {value!r}.") from None
    if n < 1:
        raise ReliabilityError(f"{name} must be a positive integer; got {value!r}.")
    return int(n)


def simulate_campaign(model: "DeviceModel", targets, times_s, *, n_chips: int, n_devices: int, rng=None,
                      device_ids: bool = True) -> pl.DataFrame:
    """Simulate programming and reading devices on several chips.

    For each chip ``c`` (one gain draw from ``model.chip_gain``), each target level, ``n_devices``
    devices are programmed once (``model.program``) and then read at every time in ``times_s``
    (``model.read``, fresh read noise per read).  Chip ``c`` draws from the ``c``-th child of
    ``rng`` (``Generator.spawn``), so a chip's data do not depend on ``n_chips``: a campaign with
    more chips extends one with fewer.

    Parameters
    ----------
    model : DeviceModel
        A conductance model (``model.unit == "uS"``).
    targets : array_like of float
        Target conductance levels in uS (1-D, finite, >= 0).
    times_s : array_like of float
        Read times in seconds after programming (1-D, finite, >= 0).
    n_chips, n_devices : int
        Chips, and devices per target level per chip.
    rng : None, int, SeedSequence or numpy.random.Generator
        Source of randomness, turned into a Generator once.
    device_ids : bool, default True
        Include the ``device`` column (0-based, unique within a chip:
        ``level_index * n_devices + j``).  ``False`` mimics data without device tracking.

    Returns
    -------
    polars.DataFrame
        Columns ``chip`` (Int64), ``device`` (Int64, if ``device_ids``), ``target_uS``,
        ``time_s``, ``conductance_uS`` (Float64), ordered by chip, time, target, device:
        ``n_chips * len(times_s) * len(targets) * n_devices`` rows.
    """
    # imported here: `devices` sits downstream of `data` in the flow and may itself read data
    from reliability.devices.model import DeviceModel
    from reliability.streams import as_generator

    if not isinstance(model, DeviceModel):
        raise ModelSpecError(f"model must be a DeviceModel; got {type(model).__name__}.")
    if model.unit != "uS":
        raise ModelSpecError(f"simulate_campaign writes conductances in uS, so the model must have unit 'uS'; got "
                             f"{model.unit!r}.")
    tg = np.atleast_1d(np.asarray(targets, dtype=float))
    tm = np.atleast_1d(np.asarray(times_s, dtype=float))
    for name, arr in (("targets", tg), ("times_s", tm)):
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ReliabilityError(f"{name} must be a non-empty 1-D sequence of finite numbers >= 0; got {arr!r}.")
    n_chips = _count("n_chips", n_chips)
    n_devices = _count("n_devices", n_devices)
    rng = as_generator(rng)
    chip_rngs = rng.spawn(n_chips)

    n_lv, n_t = tg.size, tm.size
    grid = np.repeat(tg[:, None], n_devices, axis=1)  # (levels, devices)
    per_chip = n_t * n_lv * n_devices
    g = np.empty((n_chips, n_t, n_lv, n_devices))
    for c, crng in enumerate(chip_rngs):
        gain = model.chip_gain.draw(1, crng)[0] if model.chip_gain is not None else None
        programmed = model.program(grid, crng, gain=gain)
        for k, t in enumerate(tm):
            g[c, k] = model.read(programmed, float(t), crng)

    cols = {"chip": pl.Series("chip", np.repeat(np.arange(n_chips, dtype=np.int64), per_chip), dtype=pl.Int64)}
    if device_ids:
        dev = np.tile(np.arange(n_lv * n_devices, dtype=np.int64), n_chips * n_t)
        cols["device"] = pl.Series("device", dev, dtype=pl.Int64)
    cols["target_uS"] = pl.Series("target_uS", np.tile(np.repeat(tg, n_devices), n_chips * n_t), dtype=pl.Float64)
    cols["time_s"] = pl.Series("time_s", np.tile(np.repeat(tm, n_lv * n_devices), n_chips), dtype=pl.Float64)
    cols["conductance_uS"] = pl.Series("conductance_uS", g.reshape(-1), dtype=pl.Float64)
    return pl.DataFrame(list(cols.values()))
