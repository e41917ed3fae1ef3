"""`fluxfunc db` (stub until its issue lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("db", help="db (not implemented yet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("fluxfunc db: not implemented yet")
    return 1
