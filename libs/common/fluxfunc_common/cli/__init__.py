"""fluxfunc: run Server, Worker and Beat, publish scripts, look at the queues.

The umbrella command is a thin argparse front over importable commands. Each subcommand
lives in its own module under :mod:`fluxfunc_common.cli` and exposes
``add_parser(subparsers)``, which registers the parser and sets ``func`` to a callable that
takes the parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# transfer: export, import, migrate-from-dff
COMMANDS = ("up", "deploy", "streams", "admin", "db", "transfer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fluxfunc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"fluxfunc_common.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
