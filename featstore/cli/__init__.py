"""Command-line entry points: `featstore <command>`, plus the `featurize` and `fit-head` shortcuts.

This is the error boundary: anything a user did wrong arrives as a FeatstoreError and leaves as
one line on stderr with exit status 2, never a traceback. Commands parse, call
`featstore.services` (or the store), and print; heavy libraries load only inside the command
that needs them, so `--help` is instant.
"""

from __future__ import annotations

import _thread
import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from featstore.cli import head_commands, inspection_commands, store_commands
from featstore.cli.flags import EXIT_USAGE, OneLineParser
from featstore.featurize.process_memory import keep_freed_memory
from featstore.store.errors import FeatstoreError

EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted; everything committed so far is kept"
DEBUG_ENV = "FEATSTORE_DEBUG"


def build_parser(shortcut: str | None = None) -> argparse.ArgumentParser:
    """featstore's parser; `shortcut` ("featurize", "fit-head"): the command a shortcut
    program runs, which its help and errors then call by that program's name."""
    parser = OneLineParser(
        prog="featstore",
        description="Run a frozen encoder once; train pooling and fusion heads on the cache.")
    parser.add_argument("--version", action="version", version=f"featstore {_package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    store_commands.register_store_commands(sub)
    head_commands.register_head_commands(sub)
    inspection_commands.register_inspection_commands(sub)
    if shortcut is not None:
        sub.choices[shortcut].prog = shortcut
    return parser


def _package_version() -> str:
    from featstore.version import VERSION

    return VERSION


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if _is_param_error(exc):
        from featstore.heads.params import flag_for

        text = exc.worded(flag_for).strip()  # type: ignore[attr-defined]  # named by its flags
    return text.splitlines()[0] if text else type(exc).__name__


def _is_param_error(exc: BaseException) -> bool:
    """A head parameter's error, whose message the command line words with flags; checked
    without importing heads for every other error."""
    module = sys.modules.get("featstore.heads.errors")
    return module is not None and isinstance(exc, module.ParamError)


class _FinalizerInterrupts:
    """Ctrl-C that lands inside a finalizer (`__del__`) is printed by Python as an ignored
    exception with a traceback, and lost. While a command runs, such an interrupt is raised
    again in the main thread a moment later (outside the finalizer), so `main` ends the command
    with its one line; one the command outran is reported when it returns."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.lost = False
        self.previous = sys.unraisablehook

    def __enter__(self) -> _FinalizerInterrupts:
        sys.unraisablehook = self.hook
        return self

    def __exit__(self, *exc: object) -> None:
        sys.unraisablehook = self.previous
        with self.lock:
            self.done = True

    def hook(self, unraisable: Any) -> None:
        if unraisable.exc_type is None or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.previous(unraisable)
            return
        self.lost = True
        timer = threading.Timer(0.01, self._interrupt)
        timer.daemon = True
        timer.start()

    def _interrupt(self) -> None:
        with self.lock:
            if not self.done:
                self.lost = False
                _thread.interrupt_main()


def main(argv: Sequence[str] | None = None, shortcut: str | None = None) -> int:
    try:
        with _FinalizerInterrupts() as interrupts:
            code = _main(argv, shortcut)
    except KeyboardInterrupt:  # raised again just as the command returned
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    if interrupts.lost:  # the command finished before the interrupt could be raised again
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _main(argv: Sequence[str] | None, shortcut: str | None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    keep_freed_memory()  # the process is featstore's: batches reuse each other's memory
    try:
        try:
            args = build_parser(shortcut).parse_args(argv)
        except SystemExit as done:  # --help, --version, or a bad command line (one line)
            return int(done.code or 0)
        return int(args.func(args) or 0)
    except FeatstoreError as exc:
        print(f"error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        print("error: out of memory; try a smaller --batch-tokens", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or _error_line(exc)}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # a library failure no layer below mapped: still one line
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: unexpected {type(exc).__name__}: {_error_line(exc)} "
              f"(set {DEBUG_ENV}=1 for details)", file=sys.stderr)
        return 1


def _shortcut(command: str) -> int:
    return main([command, *sys.argv[1:]], shortcut=command)


def featurize_main() -> int:
    return _shortcut("featurize")


def fit_head_main() -> int:
    return _shortcut("fit-head")
