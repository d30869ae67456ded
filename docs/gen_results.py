"""Render the results page (``docs/results.md``) from the results files in ``benchmarks/results/``.

``docs/conf.py`` calls :func:`generate` at every build, so the page always shows what the files
hold and nothing else: every number on the page comes from a results file (``tests/test_docs.py``
checks it), and the page's own words contain no digits.  Run it by hand with
``python docs/gen_results.py`` to look at the Markdown.

A results file is one JSON document (schema ``nvcim-reliability/results``, version 1)::

    {
      "schema": "nvcim-reliability/results", "schema_version": 1,
      "id": "tail-hybrid",              # the section's label: {ref}`results-tail-hybrid`
      "order": 10,                      # position on the page (then id)
      "title": "...",
      "provenance": {"script": "...", "options": "...", "commit": "<40 hex digits>",
                     "date": "YYYY-MM-DD", "recorded": "...", "machine": "..."},
      "summary": "...",                 # optional paragraph
      "tables": [{"caption": "...",
                  "columns": [["label", "template"], ...],
                  "rows": [{...}, ...]}],
      "notes": ["...", ...]             # optional
    }

``date`` is when the numbers were measured; for recorded results transcribed from an earlier
run, the date of ``commit``, the commit that recorded them (``recorded`` says so).

A column's template is a :meth:`str.format` string over the row's fields, e.g.
``"{covered}/{total}"`` or ``"{rel_rmse:.3f}"``; its literal text may hold no digits (a number
belongs in the row).  Without a format spec an integer is written with thousands separators, a
float in Python's shortest form, a ``null`` as ``-``.
"""

from __future__ import annotations

import json
import re
import string
import sys
from pathlib import Path

SCHEMA = "nvcim-reliability/results"
SCHEMA_VERSION = 1
REQUIRED = ("id", "title", "provenance", "tables")
PROVENANCE = ("script", "options", "commit", "date", "recorded")
#: keys that order or identify the documents and are not shown on the page
NOT_SHOWN = ("schema", "schema_version", "order")

HEADER = """\
# Results

This page is generated at every documentation build by `docs/gen_results.py` from the
machine-readable files in `benchmarks/results/`. Do not edit it: edit or add a results file
(`python benchmarks/run.py --results-dir benchmarks/results` writes a new one). Each section
states its provenance: the script and options that produced the numbers, and the commit and date
at which they were measured or, for recorded results transcribed from an earlier run, the commit
that recorded them. Recorded results are not re-measured by the build.
"""


class ResultsFileError(ValueError):
    """A results file that does not follow the schema (the message names the file and the fix)."""


class _Formatter(string.Formatter):
    def format_field(self, value, format_spec):
        if value is None:
            return "-"
        if format_spec:
            return format(value, format_spec)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, list):
            return " .. ".join(self.format_field(v, "") for v in value)
        return str(value)


_FORMATTER = _Formatter()
_ESCAPE = re.compile(r"([\\`*_|<>\[\]$#])")


def escape(text: str) -> str:
    """Plain text safe inside a Markdown paragraph or table cell."""
    return _ESCAPE.sub(r"\\\1", str(text))


def _literal_digits(template: str) -> bool:
    return any(re.search(r"\d", lit or "") for lit, _, _, _ in string.Formatter().parse(template))


def load(results_dir) -> list[tuple[Path, dict]]:
    """Every results file in ``results_dir``, checked, in page order."""
    docs = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ResultsFileError(f"{path}: not valid JSON ({e}); fix the file.") from e
        if doc.get("schema") != SCHEMA or doc.get("schema_version") != SCHEMA_VERSION:
            raise ResultsFileError(f"{path}: schema must be {SCHEMA!r} version {SCHEMA_VERSION}, got "
                                   f"{doc.get('schema')!r} version {doc.get('schema_version')!r}; see docs/gen_results.py.")
        missing = [k for k in REQUIRED if k not in doc] + [f"provenance.{k}" for k in PROVENANCE
                                                            if not doc.get("provenance", {}).get(k)]
        if missing:
            raise ResultsFileError(f"{path}: missing {', '.join(missing)}; every results file says where its numbers "
                                   "come from (see docs/gen_results.py).")
        for t in doc["tables"]:
            for label, template in t["columns"]:
                if _literal_digits(template):
                    raise ResultsFileError(f"{path}: column {label!r} has digits in its template {template!r}; "
                                           "put the number in the rows.")
        docs.append((path, doc))
    ids = [d["id"] for _, d in docs]
    if len(set(ids)) != len(ids):
        raise ResultsFileError(f"{results_dir}: duplicate ids {sorted(i for i in ids if ids.count(i) > 1)}.")
    return sorted(docs, key=lambda pd: (pd[1].get("order", 1000), pd[1]["id"]))


def _table(path: Path, table: dict) -> list[str]:
    labels = [escape(label) for label, _ in table["columns"]]
    out = []
    if table.get("caption"):
        out += [f"**{escape(table['caption'])}**", ""]
    out += ["| " + " | ".join(labels) + " |", "|" + " --- |" * len(labels)]
    for i, row in enumerate(table["rows"]):
        cells = []
        for label, template in table["columns"]:
            try:
                cells.append(escape(_FORMATTER.format(template, **row)))
            except (KeyError, ValueError, TypeError) as e:
                raise ResultsFileError(f"{path}: row {i} of table {table.get('caption', '')!r}, column {label!r}: "
                                       f"template {template!r} fails ({e!r}); fix the row or the template.") from e
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def render(docs) -> str:
    """The results page as Markdown."""
    lines = [HEADER]
    for path, doc in docs:
        p = doc["provenance"]
        lines += [f"(results-{doc['id']})=", f"## {escape(doc['title'])}", ""]
        if doc.get("summary"):
            lines += [escape(doc["summary"]), ""]
        script = f"`{p['script']}`" if " " not in p["script"] else escape(p["script"])
        lines += [f"- **Produced by:** {script}; {escape(p['options'])}",
                  f"- **Commit:** `{p['commit']}` ({escape(p['date'])})",
                  f"- **Recorded:** {escape(p['recorded'])}"]
        if p.get("machine"):
            lines.append(f"- **Machine:** {escape(p['machine'])}")
        lines += [f"- **File:** `benchmarks/results/{path.name}`", ""]
        for table in doc["tables"]:
            lines += _table(path, table)
        if doc.get("notes"):
            lines += [f"- {escape(n)}" for n in doc["notes"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def generate(results_dir, out) -> Path:
    """Write the page to ``out`` (only when its text changed, so Sphinx rebuilds only then)."""
    text = render(load(results_dir))
    out = Path(out)
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.stdout.write(render(load(here.parent / "benchmarks" / "results")))
