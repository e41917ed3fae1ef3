"""`fluxfunc-beat` entry point (stub: starts, logs and stops cleanly)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fluxfunc_common.lifecycle import Shutdown, run_service
from fluxfunc_common.logs import configure_logging, get_logger
from fluxfunc_common.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluxfunc-beat")
    parser.add_argument("--config")
    args = parser.parse_args(argv)

    async def serve(shutdown: Shutdown) -> int:
        settings = load_settings(args.config)
        configure_logging(settings.log)
        log = get_logger("beat")
        log.info("started")
        await shutdown.wait()
        log.info("stopped")
        return 0

    return run_service(serve)


if __name__ == "__main__":
    sys.exit(main())
