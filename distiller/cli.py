"""The `mlffd` command. Each stage of the pipeline registers its own subcommands.

A command module exposes `register(subparsers)`; it adds its parser(s) and sets `func` to a
callable taking the parsed arguments and returning an exit code. Every parser is built at start, so
a command module imports its stage's library inside the function it runs: `mlffd --help` does not
load every stage. (The few other lazy imports in mlffd say why in a comment.)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mlffd import __version__
from mlffd.errors import MLFFDError

COMMAND_MODULES = [
    "mlffd.teachers.cli",  # teachers
    "mlffd.data.cli",  # generate
    "mlffd.training.cli",  # train
    "mlffd.export.cli",  # export
    "mlffd.info",  # info (datasets and models)
    "mlffd.validate.cli",  # validate
    "mlffd.bench.cli",  # bench
    "mlffd.active",  # active
    "mlffd.distill",  # distill
    "mlffd.lammps_plugin.cli",  # lammps build
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other mlffd error (subcommands inherit it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlffd", description="MLFF Distiller: teacher -> e3nn student -> one frozen .pt")
    parser.add_argument("--version", action="version", version=f"mlffd {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # stage not present in this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MLFFDError as exc:
        print(f"mlffd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlffd {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`mlffd info model.pt | head -3`): stop quietly, as a shell tool
        # would; the rest of the output goes nowhere so the exit flush cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
