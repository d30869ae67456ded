"""Ctrl-C never loses finished work silently: every interruption either leaves a valid partial result
(exit status EXIT_PARTIAL, with the resume hint that fits the command) or says that nothing exists
yet and nothing was written (exit status 130)."""

from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np
import polars as pl
import pytest

from reliability.cli import main
from reliability.cli._output import EXIT_PARTIAL

WG = "weight-gaussian:sigma=0.05"


@pytest.fixture()
def tail_args(public_case, tmp_path):
    p = tmp_path / "eval.npz"
    np.savez(p, X=public_case.X, y=public_case.y)
    return ["tail", "--model", str(public_case.path / "model.onnx"), "--data", str(p), "--variation", WG,
            "--quantile", "1e-3", "--budget", "3000", "--json", str(tmp_path / "t.json")]


def _interrupt_at(monkeypatch, owner, name, call):
    real = getattr(owner, name)
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(owner, name, flaky)


def test_interrupted_during_the_mode_search_says_nothing_exists(tail_args, tmp_path, monkeypatch, capsys):
    from reliability.sampling import modes

    _interrupt_at(monkeypatch, modes, "_find_modes", 1)
    ck = tmp_path / "run.npz"
    assert main(tail_args + ["--checkpoint", str(ck)]) == 130
    err = capsys.readouterr().err
    assert "during the failure-mode search" in err and "result was not written" in err and "Traceback" not in err
    assert not (tmp_path / "t.json").exists() and not ck.exists()
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_interrupted_after_the_search_writes_a_valid_partial_json(with_checkpoint, tail_args, tmp_path, monkeypatch,
                                                                  capsys):
    from reliability.sampling import hybrid

    _interrupt_at(monkeypatch, hybrid.HybridRun, "place", 2)
    ck = tmp_path / "run.npz"
    args = tail_args + (["--checkpoint", str(ck)] if with_checkpoint else [])
    assert main(args) == EXIT_PARTIAL
    err = capsys.readouterr().err
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["complete"] is False and doc["quantiles"]
    assert "exit status 4" in err
    if with_checkpoint:
        assert f"resume from {ck}" in err and "give --checkpoint" not in err
    else:
        assert "give --checkpoint FILE next time" in err


@pytest.mark.slow
def test_interrupted_simulation_keeps_the_finished_chips(public_case, tmp_path, monkeypatch, capsys):
    from reliability.cim.simulate import ChipSimulator

    p = tmp_path / "eval.npz"
    np.savez(p, X=public_case.X, y=public_case.y)
    _interrupt_at(monkeypatch, ChipSimulator, "forward_weights", 3)   # the third chunk's products
    out = tmp_path / "chips.parquet"
    rc = main(["simulate", "--model", str(public_case.path / "model.onnx"), "--data", str(p), "--variation", WG,
               "--chips", "40", "--chunk-size", "8", "--out", str(out)])
    assert rc == EXIT_PARTIAL
    rows = pl.read_parquet(out)
    assert rows.height == 16 and rows["chip"].to_list() == list(range(16))
    assert "16 chips finished" in capsys.readouterr().err


def test_an_interruption_no_command_catches_is_one_line(monkeypatch, capsys):
    from reliability.cli import device

    def boom(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(device, "run_show", boom)
    assert main(["device", "show", "pcm"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: the command's result was not written") and "Traceback" not in err


def test_an_interruption_while_the_command_starts_is_one_line(monkeypatch, capsys):
    from reliability import _console

    class Starting(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "reliability.cli", Starting("reliability.cli"))
    assert _console.main() == 130
    assert "interrupted while starting: nothing was run or written" in capsys.readouterr().err


def test_an_output_is_the_old_file_or_the_whole_new_one(tmp_path):
    from reliability._json import atomic_output, write_json

    target = write_json(tmp_path / "r.json", {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    write_json(target, {"v": np.float64("nan")})
    assert json.loads(target.read_text()) == {"v": None}


@pytest.mark.slow
def test_an_interrupted_ranking_keeps_finished_candidates_and_resumes(public_case, tmp_path, monkeypatch, capsys):
    """A ranking needs every candidate: Ctrl-C during one writes no ranking (130) and keeps no partial
    estimate, the finished candidates stay in the checkpoint and a second run resumes from them."""
    rank_mod = importlib.import_module("reliability.mitigation.rank")   # the package exports the function

    p = tmp_path / "eval.npz"
    np.savez(p, X=public_case.X, y=public_case.y)
    ck, out = tmp_path / "rank.json", tmp_path / "r.json"
    args = ["rank", "--model", str(public_case.path / "model.onnx"), "--data", str(p), "--variation", WG,
            "--mitigation", "replicas:n=2", "--metric", "quantile:1e-2", "--budget", "1500", "--json", str(out),
            "--checkpoint", str(ck)]
    real = rank_mod._evaluate
    seen = []

    def interrupted_in_the_second(*a, **k):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(rank_mod, "_evaluate", interrupted_in_the_second)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "while evaluating candidate 'replicas:n=2' (2 of 2)" in err and f"kept in {ck}" in err
    assert not out.exists() and len(json.loads(ck.read_text())["candidates"]) == 1
    seen.clear()
    monkeypatch.setattr(rank_mod, "_evaluate", lambda *a, **k: (seen.append(1), real(*a, **k))[1])
    assert main(args) == 0
    assert len(seen) == 1                                  # the baseline came from the checkpoint
    doc = json.loads(out.read_text())
    assert doc["baseline"]["name"] == "baseline" and [c["name"] for c in doc["mitigations"]] == ["replicas:n=2"]


def test_an_incomplete_tail_estimate_is_an_interruption_of_the_ranking(monkeypatch):
    import reliability.sampling as sampling
    rank_mod = importlib.import_module("reliability.mitigation.rank")   # the package exports the function
    from reliability.mitigation.rank import parse_metric

    class Partial:
        complete = False

    monkeypatch.setattr(sampling, "estimate_tail", lambda *a, **k: Partial())
    design = types.SimpleNamespace(network=None, spec=None)
    for metric in ("quantile:1e-3", "prob:0.5"):
        with pytest.raises(KeyboardInterrupt):
            rank_mod._evaluate(design, None, None, None, parse_metric(metric), 100, 0, "auto")
