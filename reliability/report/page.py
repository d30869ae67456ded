"""The report page: one self-contained HTML file (figures embedded as PNG, no scripts, no external
resources) rendered by Jinja2 from the report document, its ``report.json``, and the figures as PNG
and SVG files for papers."""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from reliability._json import atomic_output, jsonable
from reliability.errors import ReliabilityError
from reliability.report.document import assemble

__all__ = ["Report", "build", "rebuild", "render", "FIGURES"]

#: the figures a report may hold, by name (``<stem>_figures/<name>.png|svg``)
FIGURES = ("device_qq", "device_tail_check", "accuracy", "worst_case", "ranking")


@dataclass(frozen=True)
class Report:
    """A built report: the page (``html``), its numbers (``document``, the content of
    ``report.json``) and each figure as PNG bytes and SVG text (``figures``: name -> dict)."""

    html: str
    document: dict
    figures: dict = field(default_factory=dict)

    def save(self, path, overwrite: bool = False) -> dict[str, Path]:
        """Write the page to ``path``, the document to ``<stem>.json`` beside it and the figures to
        ``<stem>_figures/<name>.png|svg``; nothing is overwritten unless ``overwrite``.  Returns
        the paths written."""
        from reliability.errors import option

        path = Path(path)
        if not path.parent.is_dir():
            raise ReliabilityError(f"{path}: the folder {path.parent} does not exist; create it or choose another "
                                   f"path.")
        json_path = path.with_suffix(".json")
        fig_dir = path.with_name(path.stem + "_figures")
        targets = [path, json_path] + [fig_dir / f"{n}.{ext}" for n in self.figures for ext in ("png", "svg")]
        existing = [str(p) for p in targets if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(existing)} exist(s); pass {option('overwrite')} or choose another "
                                  f"path.")
        fig_dir.mkdir(exist_ok=True)
        for name, f in self.figures.items():
            with atomic_output(fig_dir / f"{name}.png") as tmp:
                tmp.write_bytes(f["png"])
            with atomic_output(fig_dir / f"{name}.svg") as tmp:
                tmp.write_text(f["svg"], encoding="utf-8")
        with atomic_output(json_path) as tmp:
            tmp.write_text(json.dumps(jsonable(self.document), indent=2) + "\n", encoding="utf-8")
        with atomic_output(path) as tmp:
            tmp.write_text(self.html, encoding="utf-8")
        return {"html": path, "json": json_path, "figures": fig_dir}


def _figures(doc: dict, fit=None) -> dict:
    """The report's figures (matplotlib figures by name) for the sections the document has."""
    from reliability.report import figures as F

    out = {}
    if fit is not None and hasattr(fit, "candidates") and any(c.gof is not None for c in fit.candidates):
        out["device_qq"] = F.plot_fit_qq(fit)
        out["device_tail_check"] = F.plot_tail_check(fit)
    if doc["simulation"] is not None or doc["tail"] is not None:
        out["accuracy"] = F.plot_accuracy(doc["simulation"], doc["tail"])
    if doc["worst_case"] is not None and doc["worst_case"].get("bounds"):
        out["worst_case"] = F.plot_worst_case(doc["worst_case"])
    if doc["ranking"] is not None:
        out["ranking"] = F.plot_ranking(doc["ranking"])
    return out


def _encode(fig) -> dict:
    import matplotlib.pyplot as plt

    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=110)
    fig.savefig(svg, format="svg")
    plt.close(fig)
    return {"png": png.getvalue(), "svg": svg.getvalue()}


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.{digits}f} %"


def render(doc: dict, figures: dict) -> str:
    """The page for ``doc`` with ``figures`` (name -> ``{"png": bytes, ...}``) embedded."""
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["pct"] = _pct
    template = env.from_string((files("reliability.report") / "templates" / "report.html.j2").read_text())
    embedded = {k: None for k in FIGURES} | {k: base64.b64encode(v["png"]).decode("ascii") for k, v in figures.items()}
    return template.render(doc=doc, fig=embedded)


def build(*, device=None, fit=None, simulation=None, tail=None, worst_case=None, ranking=None,
          provenance: dict | None = None, title: str = "Reliability report") -> Report:
    """Build a report from results (objects or their JSON forms).

    Parameters
    ----------
    device : DeviceModel or its JSON dict, optional
        The device model (default: ``fit.model``).
    fit : DeviceFitResult or BayesFitResult, optional
        The fit: adds the candidate ranking, QQ and tail-check figures.
    simulation : SimulationResult or mapping, optional
        Chips simulated at the nominal design: the accuracy histogram.
    tail : TailResult or its JSON dict, optional
        Tail probabilities and k-th percentile accuracies: the verdict, the tail table and figure.
    worst_case : WorstCaseResult or its JSON dict, optional
    ranking : Ranking or its JSON dict, optional
        Mitigations: the Pareto figure and table.
    provenance : dict, optional
        What made the results (version, seeds, inputs' hashes, command, run time), shown as is.
    title : str

    Returns
    -------
    Report
        ``html``, ``document`` (``report.json``) and ``figures``; :meth:`Report.save` writes them.
    """
    doc = assemble(device=device, fit=fit, simulation=simulation, tail=tail, worst_case=worst_case, ranking=ranking,
                   provenance=provenance, title=title)
    figs = {name: _encode(f) for name, f in _figures(doc, fit).items()}
    doc["figures"] = sorted(figs)
    return Report(render(doc, figs), doc, figs)


def rebuild(document: dict) -> Report:
    """The page of a report document (a saved ``report.json``) drawn again, e.g. after a toolkit
    update changed the figures; nothing is recomputed.  The fit's QQ and tail-check figures need the
    fit itself and are not redrawn."""
    from reliability.report.document import SCHEMA, SCHEMA_VERSION

    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReliabilityError(f"not a report document (schema {SCHEMA!r}); give the JSON a report wrote.")
    if document.get("schema_version", 0) > SCHEMA_VERSION:
        raise ReliabilityError(f"report schema version {document.get('schema_version')}; this release reads up to "
                               f"{SCHEMA_VERSION} (upgrade the toolkit).")
    doc = dict(document)
    figs = {name: _encode(f) for name, f in _figures(doc).items()}
    doc["figures"] = sorted(figs)
    return Report(render(doc, figs), doc, figs)
