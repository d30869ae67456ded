"""What every ``reliability`` command shares: tables, the progress line, the overwrite guard and
error messages.  Command modules import from here, never from one another."""

from __future__ import annotations

import sys
from pathlib import Path

from reliability.errors import ReliabilityError


#: Exit status of a command whose result was written but whose own checks failed (a fit marked FAILED).
EXIT_FLAGGED = 3
#: Exit status of a command interrupted after writing a partial result (Ctrl-C).
EXIT_PARTIAL = 4


def table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    """Print ``rows`` as a rich table with ``columns`` (text columns left-aligned, numbers right)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, justify="right" if c not in ("candidate", "message") else "left")
    for r in rows:
        t.add_row(*[fmt(r.get(c)) for c in columns])
    Console(width=160).print(t)


def fmt(v) -> str:
    """One table cell: booleans as yes/NO, floats to 4 significant digits, NaN as ``-``."""
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.4g}"
    return str(v)


def refuse_overwrite(path, option: str, force: bool, suffix: str | None = None) -> Path:
    """The output path, checked before any work starts: its folder exists, and nothing is
    overwritten unless the user said so (``--force``).  ``suffix``: the extension the writer adds
    when it is missing (numpy's ``.npy``): the path returned, checked and reported is the one
    written."""
    path = Path(path)
    if suffix and path.suffix != suffix:
        path = path.with_name(path.name + suffix)
    output_folder(path, option)
    if path.exists() and not force:
        raise ReliabilityError(f"{option} {path} exists; pass --force to overwrite it or choose another path.")
    return path


def output_folder(path, option: str) -> Path:
    """``path``'s folder must exist (checked before a long run, not after it)."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ReliabilityError(f"{option} {path}: the folder {folder} does not exist; create it or choose another path.")
    if path.is_dir():
        raise ReliabilityError(f"{option} {path} is a folder; give a file name.")
    return path


def _int_at_least(lo: int):
    """An argparse type: a whole number >= ``lo``."""

    def parse(text: str) -> int:
        import argparse

        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}; got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}; got {v}")
        return v

    return parse


#: argparse types: a whole number >= 0 (seeds), >= 1 (counts, sizes)
nonnegative_int = _int_at_least(0)
positive_int = _int_at_least(1)


def check_outputs(args) -> None:
    """Before any work: ``--json`` may be written (``--force`` to overwrite) and ``--checkpoint``'s
    folder exists (an existing checkpoint is resumed, not overwritten)."""
    if getattr(args, "json", None):
        refuse_overwrite(args.json, "--json", args.force)
    if getattr(args, "checkpoint", None):
        output_folder(args.checkpoint, "--checkpoint")


def progress_bar(what: str):
    """A ``progress(done, total)`` callback printing ``what: done/total`` on one stderr line, or
    ``None`` when stderr is not a terminal (logs and pipes get no carriage-return noise)."""
    if not sys.stderr.isatty():
        return None

    def show(done, total):
        print(f"\r{what}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
    return show


def print_error(exc: BaseException) -> None:
    """Report an input error on stderr as ``error: <message>``."""
    print(f"error: {exc}", file=sys.stderr)


def print_fit(res) -> None:
    """A device fit's candidate ranking, its summary and the chosen model's description."""
    cols = ["candidate", "k", "loglik", "bic", "ks", "ad", "tail_low_ratio", "tail_high_ratio", "tails_ok"]
    rows = res.to_polars().to_dicts()
    table(rows, cols, title="candidates, best first (tail counts observed/expected beyond 0.1 % / 99.9 %)")
    print(res.summary())
    if res.model is not None:
        print()
        print(res.model.describe())
