"""The reliability report: its JSON holds the results' own numbers, the page is valid,
self-contained HTML that renders in a real browser, and earlier results rebuild it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from reliability.errors import DataValidationError, ReliabilityError
from reliability.report import build, load_result, run_report

VARIATION = "weight-gaussian:sigma=0.1"


@pytest.fixture(scope="module")
def results(public_case):
    """Small but real results of every kind on the public case's MLP."""
    from reliability.cim import ChipSimulator
    from reliability.data import load_bundled
    from reliability.fit import fit_device
    from reliability.mitigation import rank
    from reliability.sampling import estimate_tail
    from reliability.worstcase import worst_case

    c = public_case
    fit = fit_device(load_bundled("crosssim-set"), family="normal")
    sim = ChipSimulator(c.network, VARIATION).evaluate(c.X, c.y, 300, rng=0)
    tail = estimate_tail(c.network, c.X, c.y, VARIATION, below=[0.8], quantiles=[1e-3], budget=1500, rng=0)
    wc = worst_case(c.network, c.X, c.y, VARIATION, bounds=[0.1, 0.2], restarts=1, iterations=5, random_chips=20,
                    sensitivity=False, rng=0)
    rk = rank(c.network, c.X, c.y, VARIATION, ["adc:bits=6"], metric="mean", budget=200, rng=0)
    return {"fit": fit, "simulation": sim, "tail": tail, "worst_case": wc, "ranking": rk}


@pytest.fixture(scope="module")
def report(results):
    return build(**results, provenance={"command": "test", "seed": 0})


def test_the_json_holds_the_results_own_numbers(report, results):
    doc = report.document
    assert doc["schema"] == "nvcim-reliability/report" and doc["schema_version"] == 1
    assert doc["tail"] == json.loads(json.dumps(results["tail"].to_dict()))
    assert doc["worst_case"] == json.loads(json.dumps(results["worst_case"].to_dict()))
    assert doc["ranking"] == json.loads(json.dumps(results["ranking"].to_dict()))
    sim = results["simulation"]
    assert doc["simulation"]["count_histogram"] == np.bincount(sim.n_correct, minlength=598).tolist()
    assert doc["simulation"]["mean_accuracy"] == pytest.approx(float(sim.accuracy.mean()))
    assert doc["device"]["model"] == results["fit"].model.to_dict()
    assert doc["device"]["chosen"] == results["fit"].chosen
    q = results["tail"].quantiles[0]
    v = doc["verdict"]
    assert v["kind"] == "quantile" and v["accuracy"] == q.accuracy and v["ci95"] == list(q.ci95)
    assert f"{100 * q.accuracy:.1f} %" in v["text"] and "1 in 1,000 chips" in v["text"]
    assert sorted(report.figures) == sorted(doc["figures"]) == sorted(
        ["device_qq", "device_tail_check", "accuracy", "worst_case", "ranking"])


def test_every_number_the_page_states_is_in_the_json(report):
    """The verdict, the tail table, the worst-case table and the ranking table, as printed."""
    import html as _html

    html, doc = _html.unescape(report.html), report.document
    assert doc["verdict"]["text"] in html
    for e in doc["tail"]["estimates"]:
        assert f"{e['probability']:.3g}" in html and f"{e['ci95'][0]:.3g}" in html
    for b in doc["worst_case"]["bounds"]:
        assert f"{100 * b['accuracy']:.2f} %" in html
    for c in [doc["ranking"]["baseline"], *doc["ranking"]["mitigations"]]:
        assert f"{c['robustness']['value']:.4g}" in html


def test_the_page_is_valid_self_contained_html(report):
    html5lib = pytest.importorskip("html5lib", reason="html5lib comes with the [test] extra")
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(report.html)              # raises on any parse error
    # nothing to fetch: every image is embedded, no scripts, no style sheets, no links off the page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", report.html)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs), refs
    assert "<script" not in report.html and "<link" not in report.html and "@import" not in report.html
    assert "url(" not in report.html


def test_save_writes_page_json_and_figures_and_never_overwrites(report, tmp_path):
    paths = report.save(tmp_path / "r.html")
    assert paths["html"].read_text() == report.html
    assert json.loads(paths["json"].read_text())["verdict"] == report.document["verdict"]
    for name in report.figures:
        assert (tmp_path / "r_figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (tmp_path / "r_figures" / f"{name}.svg").read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        report.save(tmp_path / "r.html")
    report.save(tmp_path / "r.html", overwrite=True)
    with pytest.raises(ReliabilityError, match="does not exist"):
        report.save(tmp_path / "missing" / "r.html")


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "the report test needs Debian's chromium (apt-get install chromium; .ci/run installs it)"
    return exe


def _render(html_path, png_path):
    """Open the page in headless Chromium, screenshot it; returns Chromium's console lines."""
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--screenshot={png_path}", "--window-size=1100,1600",
                           html_path.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_the_page_renders_in_a_real_browser(report, tmp_path):
    from PIL import Image

    path = report.save(tmp_path / "r.html")["html"]
    console = _render(path, tmp_path / "shot.png")
    assert console == [], console
    img = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), dtype=float)
    assert img.shape == (1600, 1100)
    # not blank: text and figures make a good share of the pixels far from white
    assert (img < 200).mean() > 0.02 and img.std() > 20


def test_the_browser_check_sees_console_errors_and_blank_pages(tmp_path):
    """The checks above can fail: a page with a script error is caught, a blank page is blank."""
    from PIL import Image

    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>x</title></head><body>"
                   "<script>console.error('boom')</script></body></html>")
    assert any("boom" in line for line in _render(bad, tmp_path / "bad.png"))
    img = np.asarray(Image.open(tmp_path / "bad.png").convert("L"), dtype=float)
    assert (img < 200).mean() < 0.001


def test_results_written_by_the_commands_rebuild_the_page(results, report, tmp_path):
    from reliability._json import write_json

    results["fit"].model.save(tmp_path / "device.json")
    write_json(tmp_path / "tail.json", results["tail"].to_dict())
    write_json(tmp_path / "wc.json", results["worst_case"].to_dict())
    write_json(tmp_path / "rank.json", results["ranking"].to_dict())
    results["simulation"].to_polars().write_parquet(tmp_path / "acc.parquet")
    parts = dict(load_result(tmp_path / f) for f in ("device.json", "tail.json", "wc.json", "rank.json",
                                                      "acc.parquet"))
    assert sorted(parts) == ["device", "ranking", "simulation", "tail", "worst_case"]
    again = build(**parts, provenance={"command": "test", "seed": 0})
    for key in ("tail", "worst_case", "ranking", "verdict"):
        assert again.document[key] == report.document[key], key
    # a per-chip file carries the chips, not the run's seed and time
    drop = ("seed", "seconds")
    assert {k: v for k, v in again.document["simulation"].items() if k not in drop} == {
        k: v for k, v in report.document["simulation"].items() if k not in drop}
    assert again.document["device"]["model"] == report.document["device"]["model"]
    # without the fit object there are no QQ figures, the rest is the same
    assert sorted(again.figures) == ["accuracy", "ranking", "worst_case"]


def test_bad_inputs_are_named(tmp_path, results):
    (tmp_path / "x.json").write_text('{"something": 1}')
    with pytest.raises(DataValidationError, match="not a result a report can show"):
        load_result(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(DataValidationError, match="not a JSON file"):
        load_result(tmp_path / "y.json")
    with pytest.raises(ReliabilityError, match="no such file"):
        load_result(tmp_path / "none.json")
    with pytest.raises(ReliabilityError, match="a tail estimate or a simulation"):
        build(worst_case=results["worst_case"])
    other = dict(results["tail"].to_dict(), n_samples=100)
    with pytest.raises(DataValidationError, match="different evaluation sets"):
        build(tail=other, simulation=results["simulation"])


@pytest.mark.slow
def test_a_bayesian_fit_shows_its_posterior_intervals(results):
    from reliability.fit import fit_device_bayes
    from tests.unit.test_bayes import SMALL, _campaign

    fit = fit_device_bayes(_campaign(100, n_chips=4), rng=1, **SMALL)    # test_bayes's small fit
    rep = build(fit=fit, tail=results["tail"])
    dev = rep.document["device"]
    assert dev["posterior"] == json.loads(json.dumps(fit.to_polars().to_dicts()))
    assert dev["fit_summary"].startswith("Bayesian fit") and dev["model"] == fit.model.to_dict()
    for row in dev["posterior"]:
        assert f"{row['q95']:.4g}" in rep.html


def test_run_report_computes_every_section(public_case):
    c = public_case
    steps = []
    rep = run_report(c.network, c.X, c.y, VARIATION, quantiles=[1e-3], budget=800, chips=100, bounds=[0.1],
                     mitigations=["adc:bits=6"], seed=3, progress=lambda s, d, t: steps.append(s))
    doc = rep.document
    assert {"simulate", "tail", "ranking"} <= set(steps)
    assert doc["simulation"]["chips"] == 100 and doc["tail"]["seed"] == 3 and doc["ranking"]["metric"] == "quantile:0.001"
    assert doc["provenance"]["seed"] == 3 and set(doc["provenance"]["run_time_s"]) >= {"tail_s", "total_s"}
    assert doc["device"]["name"] == "weight-gaussian"
    with pytest.raises(ReliabilityError, match="exactly one of variation"):
        run_report(c.network, c.X, c.y, VARIATION, device="x.json")


def test_run_report_reads_a_preset_at_the_time_asked(public_case, tmp_path):
    """time_s applies to a variation too (never ignored), and a chip file's own time is not overridden."""
    from reliability.cim import ChipSpec

    c = public_case
    rep = run_report(c.network, c.X, c.y, "pcm", time_s=86400.0, quantiles=[1e-2], budget=300, chips=50, bounds=())
    assert rep.document["provenance"]["variation"]["device"]["time_s"] == 86400.0
    ChipSpec(device="pcm", time_s=3600.0).save(tmp_path / "chip.json")
    with pytest.raises(ReliabilityError, match="give one read time"):
        run_report(c.network, c.X, c.y, str(tmp_path / "chip.json"), time_s=86400.0, budget=300, chips=50, bounds=())
