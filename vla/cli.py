"""Entry-point errors: one line, exit code 2, the traceback only when asked for.

Every script in `scripts/` ends with `cli.run(main)`. Bad input (a missing path, an unknown
name, an invalid value) raises `UsageError` with a message that says what was wrong and
what to do; `run` prints it as one line, `<script>: error: <message>`, and exits with
code 2. `--debug` anywhere on the command line, or `VLA_DEBUG=1`, prints the traceback
as well. Errors that are not bad input (bugs) keep Python's traceback and exit code 1.

Scripts check their inputs before importing torch, lerobot or mujoco, so a typo costs a
fraction of a second; library validation that needs those imports (config dataclasses)
is turned into `UsageError` with `user_errors(ValueError, ...)` around the call.
The table of every bad input tried, with its line, is docs/errors.md
(written by scripts/bad_inputs.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

DEBUG_FLAG, DEBUG_ENV = "--debug", "VLA_DEBUG"


class UsageError(ValueError):
    """Bad user input; the message says what was wrong and what to do. A ValueError, so configs
    may raise it from `__post_init__` and library callers catch it as they catch any invalid value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad option raises `UsageError` instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Inside: exceptions of `kinds` (e.g. a config's ValueError) are bad input -> `UsageError`."""
    try:
        yield
    except kinds as err:
        raise UsageError(str(err)) from err


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def one_line(message: str) -> str:
    return " ".join(message.split())


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Call `main(argv)` (without --debug) and exit with its return code; a `UsageError` exits 2 with one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, prog = debug_requested(argv), Path(sys.argv[0]).name  # (main may rewrite sys.argv)
    try:
        code = main([a for a in argv if a != DEBUG_FLAG])
    except UsageError as err:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(str(err))}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(code or 0)


def writable_file(path: str | os.PathLike, flag: str) -> None:
    """`UsageError` unless `path` can be written: its folder exists and it is not a folder itself."""
    p = Path(path)
    if p.is_dir() or not p.parent.is_dir():
        why = "is a folder" if p.is_dir() else f"is in a folder that does not exist ({p.parent})"
        raise UsageError(f"{flag} {p} {why}; pass a file path in an existing folder, e.g. {flag} BENCHMARKS.md")


def require_positive(obj: object, *fields: str, zero_ok: tuple[str, ...] = ()) -> None:
    """`UsageError` naming the first of `obj`'s `fields` (a config or parsed arguments) that is not
    > 0 (>= 0 for `zero_ok` fields; None passes), with its command-line spelling."""
    for name in fields:
        value = getattr(obj, name)
        if value is not None and not (value >= 0 if name in zero_ok else value > 0):
            raise UsageError(f"{name}={value} (--{name.replace('_', '-')}) must be {'>= 0' if name in zero_ok else '> 0'}")
