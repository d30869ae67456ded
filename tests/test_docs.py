"""The documentation: the README stays a short user's guide, the results page shows exactly the
numbers of the results files, and the Sphinx build passes with warnings as errors."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

SETUP_COMMANDS = [
    "pip install -e . && reliability demo",
    "pip install -e '.[test]' && python -m pytest -q",
]
PAGES = ["install", "tour", "cli", "architecture", "device-model", "fitting", "bayesian-fit", "core", "speed",
         "tail-estimation", "worst-case", "mitigation", "reports", "benchmark-suite", "results", "api"]

# a number as written on the page: 1,990  0.063  1.44e-05  1e-4 (a sign is not part of it)
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")
COMMIT = re.compile(r"\b[0-9a-f]{40}\b")


def _gen_results():
    spec = importlib.util.spec_from_file_location("gen_results", DOCS / "gen_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _numbers(text: str) -> set[float]:
    """Every number in ``text`` as a float (thousands separators dropped; commit hashes ignored)."""
    text = COMMIT.sub(" ", str(text))
    return {float(f"{float(m.replace(',', '')):.10g}") for m in NUMBER.findall(text)}


def _file_numbers(obj, skip=("schema", "schema_version", "order", "columns")) -> set[float]:
    """The numbers a results document shows: its values (numbers, and numbers inside text) and its
    column labels; not its ordering keys or the column templates."""
    out: set[float] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "columns":
                out |= set().union(*(_numbers(label) for label, _ in v)) if v else set()
            elif k not in skip:
                out |= _file_numbers(v, skip)
    elif isinstance(obj, list):
        for v in obj:
            out |= _file_numbers(v, skip)
    elif isinstance(obj, bool) or obj is None:
        pass
    elif isinstance(obj, (int, float)):
        out.add(float(f"{abs(float(obj)):.10g}"))        # the page's numbers are read without their sign
    else:
        out |= _numbers(obj)
    return out


def _fenced_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


# ---------------------------------------------------------------------------------------- README
def test_readme_is_a_short_user_guide():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 260
    for phrase in ("Previous sessions", "Correction:", "Earlier defaults", "previous default", "for the record"):
        assert phrase not in text, f"README reads like a lab notebook again: {phrase!r}"


def test_readme_has_exactly_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    commands = [line.split("#", 1)[0].strip() for block in _fenced_blocks(text, "bash")
                for line in block.splitlines() if line.strip()]
    assert commands == SETUP_COMMANDS
    # .ci/run runs the README's test command: keep them the same
    assert SETUP_COMMANDS[1].replace("pip install -e", "pip install --quiet -e") in (ROOT / ".ci" / "run").read_text()


def test_readme_links_exist():
    text = README.read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert links, "the README links to the documentation pages"
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, missing


def test_readme_tail_table_is_generated_from_the_recorded_bench_runs():
    """The README's benchmark table is what `reliability bench table --update` makes of the recorded
    runs, and those runs are complete: every case in them, every event, with provenance."""
    from reliability.bench.leaderboard import COMPACT, summarize, to_markdown
    from reliability.bench.runner import read_runs
    from reliability.cli.bench import BEGIN, END

    text = README.read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    records = read_runs(RESULTS / "bench_runs.jsonl")
    assert block == "\n" + to_markdown(summarize([r for r in records if r["estimator"] == "hybrid"]), COMPACT)
    assert {r["case"] for r in records} >= {"digits_mlp_s05", "linear-d1e5-p1e-7"}
    assert "--estimator hybrid --update README.md" in " ".join(text.split())
    assert all(r["commit"] and r["machine"]["cpus"] for r in records)


# ---------------------------------------------------------------------------------- results page
def test_results_files_follow_the_schema_with_provenance():
    gen = _gen_results()
    docs = gen.load(RESULTS)
    assert len(docs) >= 5
    for path, doc in docs:
        p = doc["provenance"]
        assert COMMIT.search(p["commit"]), (path, p["commit"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", p["date"]), (path, p["date"])
        assert p["script"] and p["options"] and p["recorded"], path
        assert all(t["rows"] for t in doc["tables"]), path


def test_every_number_on_the_results_page_comes_from_a_results_file_and_back():
    gen = _gen_results()
    docs = gen.load(RESULTS)
    page = gen.render(docs)
    from_files = set().union(*(_file_numbers(doc) for _, doc in docs))
    on_page = _numbers(page)
    assert on_page <= from_files, f"numbers on the page that no results file holds: {sorted(on_page - from_files)}"
    assert from_files <= on_page, f"numbers of the results files missing from the page: {sorted(from_files - on_page)}"
    for path, doc in docs:
        assert f"(results-{doc['id']})=" in page and path.name in page
        assert doc["provenance"]["commit"] in page


def test_results_page_states_how_the_numbers_were_recorded():
    gen = _gen_results()
    page = gen.render(gen.load(RESULTS))
    assert "Recorded results" in page and "provenance" in page
    assert page.count("**Produced by:**") == len(list(RESULTS.glob("*.json")))


def test_a_results_file_without_provenance_is_refused(tmp_path):
    gen = _gen_results()
    doc = json.loads((RESULTS / "worstcase.json").read_text())
    del doc["provenance"]["commit"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(gen.ResultsFileError, match="provenance.commit"):
        gen.load(tmp_path)
    doc = json.loads((RESULTS / "worstcase.json").read_text())
    doc["tables"][0]["columns"][0][1] = "{worst_pct} of 100"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(gen.ResultsFileError, match="digits in its template"):
        gen.load(tmp_path)


# ---------------------------------------------------------------------------------------- Sphinx
def test_index_lists_every_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    listed = [line.strip() for block in _fenced_blocks(index, r"\{toctree\}") for line in block.splitlines()
              if line.strip() and not line.strip().startswith(":")]
    assert sorted(listed) == sorted(PAGES)
    for page in PAGES:
        assert page == "results" or (DOCS / f"{page}.md").exists(), page


@pytest.mark.slow
def test_sphinx_build_passes_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="Sphinx is not installed (it comes with the [test] extra)")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(tmp_path / "html")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    html = (tmp_path / "html" / "results.html").read_text(encoding="utf-8")
    assert "Recorded results" in html
    assert (tmp_path / "html" / "api.html").exists()


@pytest.mark.slow
def test_the_readme_python_tour_runs(public_case, tmp_path, monkeypatch):
    """The README's Python tour, on a simulated PCM campaign and the public case's MLP (the names it
    uses: ``campaign.csv``, ``model.onnx``, ``X``, ``y``); the save its comment suggests works
    again on the file it wrote."""
    import shutil

    from reliability.data import simulate_campaign, write_measurements
    from reliability.devices import load_device

    (block,) = [b for b in _fenced_blocks(README.read_text(encoding="utf-8"), "python") if "fit_device" in b]
    monkeypatch.chdir(tmp_path)
    frame = simulate_campaign(load_device("pcm"), [2, 6, 10, 14, 18, 22], [20, 3600, 86400], n_chips=4,
                              n_devices=60, rng=0)
    write_measurements(frame, tmp_path / "campaign.csv")
    shutil.copy(public_case.path / "model.onnx", tmp_path / "model.onnx")
    ns = {"X": public_case.X, "y": public_case.y}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["fit"].success and ns["ranking"].to_polars().height >= 4
    save = re.search(r"\.save\((.*?)\)\n", block).group(1)
    for _ in range(2):
        eval(f"model.save({save})", ns)
    assert load_device("device.json").to_dict() == ns["model"].to_dict()
