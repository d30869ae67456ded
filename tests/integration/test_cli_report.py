"""``reliability report``: run what the page needs, or rebuild it from earlier results."""

from __future__ import annotations

import json

import pytest

from reliability.cli import main

CASE = "reliability/bench/cases/digits_mlp_s05"


@pytest.fixture()
def case_files():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / CASE
    return str(root / "model.onnx"), str(root / "data.npz")


def test_report_runs_and_writes_page_json_and_figures(case_files, tmp_path, capsys):
    model, data = case_files
    out = tmp_path / "report.html"
    argv = ["report", "--model", model, "--data", data, "--variation", "weight-gaussian:sigma=0.1", "--chips", "100",
            "--budget", "600", "--quantile", "1e-3", "--bound", "0.1", "--seed", "2", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "worst 1 in 1,000 chips" in text and "wrote" in text
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["tail"]["seed"] == 2 and doc["simulation"]["chips"] == 100
    assert doc["provenance"]["command"].startswith("reliability report")
    assert set(doc["provenance"]["inputs_sha256"]) == {"model", "data"}
    assert (tmp_path / "report_figures" / "accuracy.svg").is_file()
    assert main(argv) == 2                      # nothing is overwritten without --force
    assert "--force" in capsys.readouterr().err
    # the page redrawn from its JSON alone: the same numbers, nothing recomputed
    assert main(["report", "--from", str(tmp_path / "report.json"), "--out", str(tmp_path / "again.html")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again == doc
    assert main(["report", "--from", str(tmp_path / "report.json"), str(tmp_path / "report.json"), "--out",
                 str(tmp_path / "x.html")]) == 2


def test_report_from_earlier_results(case_files, tmp_path, capsys):
    model, data = case_files
    tail, acc = tmp_path / "tail.json", tmp_path / "acc.parquet"
    assert main(["tail", "--model", model, "--data", data, "--variation", "weight-gaussian:sigma=0.1", "--quantile",
                 "1e-3", "--budget", "500", "--json", str(tail)]) == 0
    assert main(["simulate", "--model", model, "--data", data, "--variation", "weight-gaussian:sigma=0.1", "--chips",
                 "50", "--out", str(acc)]) == 0
    capsys.readouterr()
    assert main(["report", "--from", str(tail), str(acc), "--out", str(tmp_path / "r.html")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["tail"] == json.loads(tail.read_text()) and doc["simulation"]["chips"] == 50
    assert set(doc["provenance"]["from_files_sha256"]) == {str(tail), str(acc)}


@pytest.mark.parametrize("extra, message", [
    (["--from", "x.json", "--model", "m.onnx"], "--from builds the page from earlier results"),
    (["--data", "d.npz"], "--model missing"),
    (["--from", "nope.json"], "no such file"),
])
def test_report_argument_errors(extra, message, tmp_path, capsys):
    assert main(["report", *extra, "--out", str(tmp_path / "r.html")]) == 2
    assert message in capsys.readouterr().err
