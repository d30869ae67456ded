"""nvcim-reliability: statistical reliability of computing-in-memory accelerators.

The data flow is one-way (see DESIGN.md in the repository):
measurements -> device model (``reliability.fit``) -> chip (``reliability.cim``) ->
accuracy per chip -> tail / worst case (``reliability.sampling``) -> ranking and reports.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# OpenBLAS's idle worker threads spin for about 0.1 s (2**28 cycles) after every call, and the
# chip simulator draws devices in its own threads right after each chunk's products: on 2 cores
# the spinning took a third of the draws' CPU time (PCM chips 1.9x the bare products instead of
# 1.6x).  A timeout of 2**4 cycles lets them sleep at once.  It only takes effect when set before
# numpy is first imported (the ``reliability`` command does; scripts that import numpy first can
# set OPENBLAS_THREAD_TIMEOUT=4 themselves) and never overrides a value the user set.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from reliability.errors import ReliabilityError, DataValidationError, ModelSpecError  # noqa: E402

__all__ = ["__version__", "ReliabilityError", "DataValidationError", "ModelSpecError"]
