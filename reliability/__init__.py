"""nvcim-reliability: statistical reliability of computing-in-memory accelerators.

The data flow is one-way (see DESIGN.md in the repository):
measurements -> device model (``reliability.fit``) -> chip (``reliability.cim``) ->
accuracy per chip -> tail / worst case (``reliability.sampling``) -> ranking and reports.
"""

__version__ = "0.1.0"

from reliability.errors import ReliabilityError, DataValidationError, ModelSpecError  # noqa: E402

__all__ = ["__version__", "ReliabilityError", "DataValidationError", "ModelSpecError"]
