"""The core package works without its optional extras (``bayes``: PyMC, ArviZ; ``dask``: Dask;
``torch``: PyTorch).

Each check runs in a fresh interpreter: ``sys.modules[name] = None`` makes ``import name`` raise
ImportError there, as if the extra were not installed, without touching this process's modules.
PyTorch is hidden instead behind a package of its name that raises ImportError when imported:
SciPy and polars look it up in ``sys.modules`` and with ``find_spec``, which a ``None`` entry
breaks.
"""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = ("pymc", "arviz", "dask", "distributed")      # and torch (see the module docstring)
CORE = ("reliability", "reliability.data", "reliability.devices", "reliability.fit", "reliability.cim",
        "reliability.sampling", "reliability.cli")


def _run(code: str, shadow: Path | None = None):
    if shadow is not None:
        (shadow / "torch").mkdir()
        (shadow / "torch" / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
        code = f"import sys; sys.path.insert(0, {str(shadow)!r})\n" + code
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


BLOCKED = f"""
import importlib, json, sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None          # import name -> ImportError
for mod in {CORE!r}:
    importlib.import_module(mod)
from reliability.errors import ReliabilityError
from reliability.data import simulate_campaign
from reliability.devices import DeviceModel
from reliability.fit.bayes import fit_device_bayes
from reliability.sampling.parallel import make_client
from reliability.cim import ChipSimulator
from reliability.bench import load_case
out = {{}}
data = simulate_campaign(DeviceModel(), [5.0, 20.0], [0.0], n_chips=2, n_devices=5, rng=0)
for key, call in (("bayes", lambda: fit_device_bayes(data, draws=10, tune=10)),
                  ("dask", lambda: make_client(workers=1)),
                  ("torch", lambda: ChipSimulator(load_case("digits_mlp_s05").network, "weight-gaussian:sigma=0.1",
                                                  backend="torch"))):
    try:
        call()
        out[key] = None
    except ReliabilityError as exc:
        out[key] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_core_imports_and_clear_errors_without_the_optional_extras(tmp_path):
    msgs = _run(BLOCKED, shadow=tmp_path)
    assert msgs["bayes"] is not None, "fit_device_bayes ran without PyMC/ArviZ instead of raising"
    assert "nvcim-reliability[bayes]" in msgs["bayes"], msgs["bayes"]
    assert msgs["dask"] is not None, "make_client ran without Dask instead of raising"
    assert "nvcim-reliability[dask]" in msgs["dask"], msgs["dask"]
    assert msgs["torch"] is not None and "nvcim-reliability[torch]" in msgs["torch"], msgs["torch"]


@pytest.mark.slow
def test_core_imports_do_not_load_the_optional_extras():
    """Importing the core packages (extras installed) loads none of them: their imports are lazy."""
    loaded = _run(f"""
import importlib, json, sys
for mod in {CORE!r}:
    importlib.import_module(mod)
print(json.dumps(sorted(n for n in {OPTIONAL + ("torch",)!r} if n in sys.modules)))
""")
    assert loaded == [], f"imported at module level by the core packages: {loaded}"
