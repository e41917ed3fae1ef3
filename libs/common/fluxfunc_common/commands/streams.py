"""`fluxfunc streams` (stub until its issue lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("streams", help="streams (not implemented yet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("fluxfunc streams: not implemented yet")
    return 1
