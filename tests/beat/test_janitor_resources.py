"""The janitor's clean-up of the resource directory: expired uploads and large-data files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fluxfunc_beat import janitor
from fluxfunc_common import resources
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol


async def test_janitor_deletes_expired_temporary_files(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    root = resources.root_of(settings.resources.path)
    now = time.time()
    files: dict[str, Path] = {}
    for folder, name, expires in ((resources.UPLOADS, "old.csv", now - 5),
                                  (resources.UPLOADS, "new.csv", now + 600),
                                  (resources.DOWNLOADS, "api-resp.json", now - 5)):
        (root / folder).mkdir(exist_ok=True)
        files[f"{folder}/{name}"] = path = root / folder / resources.stamped_name(name, expires)
        path.write_text("x")
    (root / "report.csv").write_text("mine")  # a user's file is never touched
    report = await janitor.sweep(clients.main, clients.keys, StreamProtocol(clients.main, clients.keys),
                                 store, settings, queues=[], now=now)
    assert report.temp_files_removed == 2
    assert [k for k, p in files.items() if p.exists()] == [".uploads/new.csv"]
    assert (root / "report.csv").exists()
