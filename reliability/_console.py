"""The ``reliability`` console script: the command line, with an interruption during start-up
answered by one line instead of a traceback (the entry point imports nothing else first)."""

import sys


def main() -> int:
    try:
        from reliability.cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted while starting: nothing was run or written", file=sys.stderr)
        return 130
    return cli_main()
