"""Exception types shared by every entry point.

Every error names the argument (or file, row and column), the rule that was broken, the value
received and what to do about it.  They subclass :class:`ValueError` so generic callers that
catch ``ValueError`` keep working.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Sequence


class ReliabilityError(ValueError):
    """Base class of the toolkit's input errors."""


class DataValidationError(ReliabilityError):
    """Measurement data that break the documented schema (see :mod:`reliability.data`)."""


class ModelSpecError(ReliabilityError):
    """A device model, preset name or model file that cannot be used as given."""


class MissingDependencyError(ReliabilityError):
    """A feature needs an optional dependency (an extra of the package) that is not installed."""


class FitFailedError(ReliabilityError):
    """The sampler's diagnostics failed: the posterior is not trustworthy and no model is returned.

    Attributes
    ----------
    diagnostics : polars.DataFrame
        One row per failing parameter (r_hat, ess_bulk, ess_tail) plus the sampler-level checks.
    suggestions : tuple of str
        What to try.
    result : BayesFitResult
        The failed fit (``success`` False, ``model`` None) for inspection: ``idata``, ``to_polars()``.
    """

    def __init__(self, message: str, diagnostics: Any, suggestions: Sequence[str], result=None):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.suggestions = tuple(suggestions)
        self.result = result


class InterruptedEarly(KeyboardInterrupt):
    """Ctrl-C before a long computation had anything to keep; the message says where it was, e.g.
    ``during the failure-mode search ...`` (the command line prints it with exit status 130)."""


# ---------------------------------------------------------------- options named in messages
# A message names the fix in the caller's own words: Python parameter names (``unit='uS'``) for the
# library, flags (``--unit uS``) when the command line is speaking.  The command line switches the
# voice for the duration of a command (:func:`speaking_cli`); library code calls :func:`option`.
_VOICE: contextvars.ContextVar[str] = contextvars.ContextVar("reliability_voice", default="python")


class Placeholder(str):
    """A value shown as written (``<volts>``), not quoted."""


def _shell(text: str) -> str:
    """``text`` as typed in a shell (quoted when it needs it); placeholders as written."""
    import shlex

    return text if isinstance(text, Placeholder) else shlex.quote(str(text))


def _cli_columns(value) -> str:
    if not isinstance(value, dict):
        return f"--column {_shell(value)}"
    parts = []
    for k, v in value.items():
        pair = f"{k}={'' if v is None else v}"
        parts.append(f"--column {pair if isinstance(k, Placeholder) or isinstance(v, Placeholder) else _shell(pair)}")
    return " ".join(parts)


# parameter -> how the command line spells it (a flag, or a function of the value)
_CLI = {
    "unit": lambda v: f"--unit {_shell(v)}",
    "current_unit": lambda v: f"--unit {_shell(v)}",  # the command line has one --unit for both kinds of cells
    "read_voltage": lambda v: f"--read-voltage {_shell(v)}",
    "columns": _cli_columns,
    "drop_invalid": lambda v: "--drop-invalid",
    "drop_outliers": lambda v: "--drop-outliers",
    "overwrite": lambda v: "--force",
    "wide": lambda v: "--wide",
    "censor": lambda v: "--censor LOW HIGH" if isinstance(v, Placeholder) else f"--censor {v[0]:g} {v[1]:g}",
    "t0_s": lambda v: f"--t0 {v}",
    "time_origin": lambda v: f"--time-origin {v}",
    "time_s": lambda v: f"--time {v:g}" if isinstance(v, (int, float)) else "--time",
    "state": lambda v: f"--state {v}",
    "family": lambda v: f"--family {v}",
    "draws": lambda v: f"--draws {v}",
    "tune": lambda v: f"--tune {v}",
    "chains": lambda v: f"--chains {v}",
    "target_accept": lambda v: f"--target-accept {v}",
    "scale_degree": lambda v: f"--scale-degree {v}",
    "chip_gain": lambda v: "" if v else "--no-chip-gain",
    "stuck": lambda v: f"--stuck {({True: 'yes', False: 'no'}.get(v, v))}",
}

# choices that are a flag on the command line but not a parameter in Python: how the library spells them
# (``--wide`` is the reader ``from_wide``, not a ``wide=`` option of ``read_measurements``)
_PYTHON = {
    "wide": lambda v: "reliability.data.from_wide(...)",
}


def option(name: str, value: Any = True) -> str:
    """How the caller passes ``name=value``: ``unit='uS'`` from Python, ``--unit uS`` on the command line.

    A :class:`Placeholder` value is shown as written (``read_voltage=<volts>``, ``--read-voltage <volts>``);
    ``columns`` takes a dict (``--column NAME=SCHEMA`` per entry, ``NAME=`` for ``None``); a name
    without a Python parameter (``wide``) is shown as the library call that does it.
    """
    if _VOICE.get() == "cli" and name in _CLI:
        return _CLI[name](value)
    if name in _PYTHON:
        return _PYTHON[name](value)
    return f"{name}={value if isinstance(value, Placeholder) else repr(value)}"


@contextlib.contextmanager
def speaking_cli():
    """Within this block, :func:`option` names command-line flags."""
    token = _VOICE.set("cli")
    try:
        yield
    finally:
        _VOICE.reset(token)
