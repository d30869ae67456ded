"""One device's behaviour: variation families, state dependence, drift, read noise, stuck-at
faults, chip gain, literature presets, and the versioned JSON schema.

This package knows nothing about networks or sampling strategies (see DESIGN.md).  Its names are
imported on first use (PEP 562): listing the presets (``reliability device presets``) loads
neither SciPy nor polars.
"""

from __future__ import annotations

import importlib

#: public name -> the submodule that defines it
_WHERE = {
    "ChipGain": "components", "Drift": "components", "EmpiricalVariation": "components",
    "ProgrammingVariation": "components", "ReadNoise": "components", "StuckAt": "components",
    "FAMILIES": "families", "VARIATION_FAMILIES": "families", "Family": "families", "family_names": "families",
    "get_family": "families",
    "SCHEMA": "model", "SCHEMA_VERSION": "model", "DeviceModel": "model", "ProgrammedDevices": "model",
    "PosteriorDeviceModel": "posterior",
    "Constant": "state", "Polynomial": "state", "Spline": "state", "StateFunction": "state",
}

__all__ = [
    "DeviceModel", "PosteriorDeviceModel", "ProgrammedDevices", "ProgrammingVariation", "EmpiricalVariation", "Drift", "ReadNoise",
    "StuckAt", "ChipGain", "Constant", "Polynomial", "Spline", "StateFunction", "Family", "FAMILIES", "VARIATION_FAMILIES",
    "family_names", "get_family", "SCHEMA", "SCHEMA_VERSION", "load_device", "preset_names",
]


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'reliability.devices' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"reliability.devices.{where}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load_device(spec):
    """A :class:`DeviceModel` from a preset name, a JSON path, or a model (returned as is)."""
    from reliability.devices.presets import load_device as _load

    return _load(spec)


def preset_names():
    from reliability.devices.presets import preset_names as _names

    return _names()
