"""``reliability bench``: list, run (with a plug-in by import path, resume, failures) and table."""

from __future__ import annotations

import json

import pytest

from reliability.cli import main
from reliability.cli.bench import BEGIN, END

CASE = "linear-d1e3-p1e-3"
TOY = "tests.unit.test_bench_suite"


def test_list_names_every_case_with_its_reference(capsys):
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits_mlp_s05", "linear-d1e5-p1e-7", "series8-d1e5-p1e-6"):
        assert name in out
    assert "115,520,000 chips" in out and "closed form" in out and "hybrid" in out


def test_run_then_resume_then_table(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    args = ["bench", "run", "--case", CASE, "--estimator", "mc", "--estimator", f"{TOY}:toy_function",
            "--budget", "500", "--out", str(out)]
    assert main(args + ["--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 runs (0 found" in text and "rel. RMSE" in text
    assert main(args + ["--repeats", "3"]) == 0
    assert "6 runs (4 found" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 6
    # options are part of the estimator's label: other runs; an option the estimator lacks is refused
    assert main(["bench", "run", "--case", CASE, "--estimator", f"{TOY}:toy_function", "--option", "scale=1.0",
                 "--repeats", "1", "--budget", "500", "--out", str(tmp_path / "other.jsonl")]) == 0
    rec = json.loads((tmp_path / "other.jsonl").read_text())
    assert rec["options"] == {"scale": 1.0} and rec["estimator"] == f"{TOY}:toy_function(scale=1.0)"
    assert main(["bench", "run", "--case", CASE, "--estimator", "mc", "--option", "scale=1.0", "--repeats", "1",
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "cannot be built with options" in capsys.readouterr().err

    assert main(["bench", "table", str(out)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| case | event |") and md.count("\n") == 4
    assert main(["bench", "table", str(out), "--estimator", "nope"]) == 2
    assert "not in" in capsys.readouterr().err
    assert main(["bench", "table", str(out), "--estimator", "mc", "--compact"]) == 0
    md = capsys.readouterr().out
    assert md.count("\n") == 3 and "evals for 10 %" not in md
    html = tmp_path / "lb.html"
    assert main(["bench", "table", str(out), "--format", "html", "--out", str(html)]) == 0
    assert "<table>" in html.read_text()
    assert main(["bench", "table", str(out), "--format", "html", "--out", str(html)]) == 2
    assert "--force" in capsys.readouterr().err


def test_table_updates_only_the_marked_block(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    assert main(["bench", "run", "--case", CASE, "--estimator", "mc", "--repeats", "2", "--budget", "300",
                 "--out", str(out)]) == 0
    doc = tmp_path / "README.md"
    doc.write_text(f"# title\n\ntext before\n{BEGIN}\nold table\n{END}\ntext after\n")
    assert main(["bench", "table", str(out), "--update", str(doc)]) == 0
    new = doc.read_text()
    assert new.startswith("# title\n\ntext before\n" + BEGIN + "\n| case |") and new.endswith(END + "\ntext after\n")
    assert "old table" not in new and "| mc |" in new
    doc.write_text("no markers here\n")
    assert main(["bench", "table", str(out), "--update", str(doc)]) == 2
    assert "marker" in capsys.readouterr().err and doc.read_text() == "no markers here\n"


def test_two_budgets_and_the_target_mode(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    assert main(["bench", "run", "--case", CASE, "--estimator", "is", "--budget", "300", "--budget", "1000",
                 "--repeats", "3", "--out", str(out)]) == 0
    assert "6 runs" in capsys.readouterr().out
    assert main(["bench", "table", str(out), "--mode", "target", "--target-rel-error", "0.5"]) == 0
    md = capsys.readouterr().out
    assert "first budget within target" in md and "300: " in md and "1,000: " in md and md.count("\n") == 3
    assert main(["bench", "table", str(out), "--target-rel-error", "2"]) == 2


def test_failing_plugin_is_reported_and_recorded(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    assert main(["bench", "run", "--case", CASE, "--estimator", f"{TOY}:raising", "--repeats", "2", "--budget", "300",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "run failed" in err and "ZeroDivisionError" in err and "2 run(s) failed" in err
    assert all(json.loads(line)["status"] == "failed" for line in out.read_text().splitlines())


@pytest.mark.parametrize("argv, message", [
    (["--case", "nope"], "not a shipped benchmark case"),
    (["--case", CASE, "--estimator", "nope"], "not a registered name"),
    (["--case", CASE, "--option", "novalue"], "KEY=VALUE"),
    (["--case", CASE, "--out", "/no/such/folder/r.jsonl"], "does not exist"),
])
def test_bad_run_arguments_are_named(argv, message, capsys):
    assert main(["bench", "run", *argv, "--repeats", "1", "--budget", "200"]) == 2
    assert message in capsys.readouterr().err


def test_budget_below_100_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "run", "--case", CASE, "--budget", "50"])
    assert "at least 100" in capsys.readouterr().err
