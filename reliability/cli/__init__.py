"""The ``reliability`` command: thin argument parsing over the library, then printing.

One module per command (``demo``, ``fit``, ``simulate``, ``tail``, ``worstcase``, ``rank``, ``report``, ``finetune``,
``device``, ``bench``), each
with ``add_parser(subparsers)`` and ``run(args) -> int``; what they share (tables, the progress line,
the overwrite guard, error messages) is in :mod:`reliability.cli._output`.  Building the parser
imports no numerics: each command imports the library when it runs.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from reliability import __version__
from reliability.cli import bench, demo, device, finetune, fit, rank, report, simulate, tail, worstcase
from reliability.cli._output import print_error
from reliability.errors import ReliabilityError, speaking_cli

#: The commands in the order ``reliability --help`` lists them.
COMMANDS = (demo, fit, simulate, tail, worstcase, rank, report, finetune, device, bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``reliability`` argument parser with every command's subparser."""
    p = argparse.ArgumentParser(prog="reliability", description="Statistical reliability of computing-in-memory "
                                "accelerators: fit device variation, propagate it, estimate tail accuracy.")
    p.add_argument("--version", action="version", version=f"nvcim-reliability {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``reliability`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success; 1 a fit that produced no model; 2 an input error (printed as
    ``error: ...``); 3 a result written whose own checks failed (a fit marked FAILED); 4 interrupted
    after writing a partial result; 130 interrupted with nothing written.
    """
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        # the command as given, for results that record what made them (report provenance)
        args.command_line = " ".join(["reliability", *(sys.argv[1:] if argv is None else argv)])
        if not hasattr(args, "func"):
            parser.print_help()
            return 0
        with speaking_cli(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except (ReliabilityError, FileExistsError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    except KeyboardInterrupt as exc:
        # a command that can keep part of its work catches the interruption itself and exits with
        # EXIT_PARTIAL; reaching here means its result was never written (every output is written
        # atomically, so no file is half-written)
        where = f" {exc}" if str(exc) else ""
        print(f"interrupted{where}: the command's result was not written; no output file is half-written",
              file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning on the command line is a line for the user (``warning: ...``), not a source location."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)
