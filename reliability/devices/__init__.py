"""One device's behaviour: variation families, state dependence, drift, read noise, stuck-at
faults, chip gain, literature presets, and the versioned JSON schema.

This package knows nothing about networks or sampling strategies (see DESIGN.md).
"""

from reliability.devices.components import (
    ChipGain, Drift, EmpiricalVariation, ProgrammingVariation, ReadNoise, StuckAt,
)
from reliability.devices.families import FAMILIES, VARIATION_FAMILIES, Family, family_names, get_family
from reliability.devices.model import SCHEMA, SCHEMA_VERSION, DeviceModel, ProgrammedDevices
from reliability.devices.posterior import PosteriorDeviceModel
from reliability.devices.state import Constant, Polynomial, Spline, StateFunction

__all__ = [
    "DeviceModel", "PosteriorDeviceModel", "ProgrammedDevices", "ProgrammingVariation", "EmpiricalVariation", "Drift", "ReadNoise",
    "StuckAt", "ChipGain", "Constant", "Polynomial", "Spline", "StateFunction", "Family", "FAMILIES", "VARIATION_FAMILIES",
    "family_names", "get_family", "SCHEMA", "SCHEMA_VERSION", "load_device", "preset_names",
]


def load_device(spec):
    """A :class:`DeviceModel` from a preset name, a JSON path, or a model (returned as is)."""
    from reliability.devices.presets import load_device as _load

    return _load(spec)


def preset_names():
    from reliability.devices.presets import preset_names as _names

    return _names()
