"""Exception types shared by every entry point.

Every error names the argument (or file, row and column), the rule that was broken, the value
received and what to do about it.  They subclass :class:`ValueError` so generic callers that
catch ``ValueError`` keep working.
"""


class ReliabilityError(ValueError):
    """Base class of the toolkit's input errors."""


class DataValidationError(ReliabilityError):
    """Measurement data that break the documented schema (see :mod:`reliability.data`)."""


class ModelSpecError(ReliabilityError):
    """A device model, preset name or model file that cannot be used as given."""
