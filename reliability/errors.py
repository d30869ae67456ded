"""Exception types shared by every entry point.

Every error names the argument (or file, row and column), the rule that was broken, the value
received and what to do about it.  They subclass :class:`ValueError` so generic callers that
catch ``ValueError`` keep working.
"""

from __future__ import annotations

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
