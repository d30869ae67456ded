"""The ``reliability`` command's structure: a fast start (building the parser and listing presets
import no heavy library), command modules independent of one another, and the worstcase parser's
choices in step with :mod:`reliability.worstcase`."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "reliability" / "cli"
HEAVY = ("pymc", "arviz", "dask", "sklearn", "onnx", "numba", "reliability.cim._kernels", "scipy", "polars")


def _loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which of HEAVY it left in ``sys.modules``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_heavy_library():
    assert _loaded_after("import reliability.cli\nreliability.cli.build_parser()") == []


def test_device_presets_imports_no_heavy_library():
    code = ("import contextlib, io, reliability.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert reliability.cli.main(['device', 'presets']) == 0")
    assert _loaded_after(code) == []


def test_reliability_devices_loads_its_modules_on_first_use():
    """The package's names resolve lazily (PEP 562) to the same objects as the submodules'."""
    import reliability.devices as dev
    from reliability.devices.model import DeviceModel

    assert dev.DeviceModel is DeviceModel and "DeviceModel" in dir(dev)
    assert set(dev.__all__) <= set(dir(dev))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        dev.Nope


def test_command_modules_do_not_import_each_other():
    commands = {p.stem for p in CLI.glob("*.py") if not p.stem.startswith("_")}
    assert {"demo", "device", "fit", "simulate", "tail", "worstcase"} <= commands
    for name in commands:
        tree = ast.parse((CLI / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                if node.module == "reliability.cli":
                    imported.update(f"reliability.cli.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        crossed = {m for m in imported if m.startswith("reliability.cli.") and m.rsplit(".", 1)[1] in commands}
        assert not crossed, (name, crossed)


def test_worstcase_choices_match_the_library():
    from reliability import worstcase as lib
    from reliability.cli import worstcase as cli

    assert cli.NORMS == tuple(lib.NORMS)
    assert cli.OPTIMIZERS == tuple(lib.OPTIMIZERS)
    assert cli.DEFAULT_FOCUS == tuple(lib.DEFAULT_FOCUS)
    assert cli.SEARCHABLE_BLOCKS == tuple(lib.SEARCHABLE_BLOCKS)


@pytest.mark.parametrize("argv", [["simulate", "--help"], ["tail", "--help"], ["worstcase", "--help"]])
def test_every_command_has_help(argv, capsys):
    from reliability.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "--variation" in capsys.readouterr().out
