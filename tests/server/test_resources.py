"""The resource API's limits and refusals, and file answers, on the in-process Server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.server.conftest import Api

from fluxfunc_common import resources
from fluxfunc_common.settings import Settings


@pytest.fixture
def server_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(resources={"max_upload_bytes": 30_000}, server={"max_body_mb": 0.01})


def form(*files: tuple[str, bytes], field: str = "files") -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, content in files:
        data.add_field(field, content, filename=name, content_type="application/octet-stream")
    return data


async def test_uploads_beyond_the_resource_limit_are_413_and_leave_nothing(
        api: Api, server_settings: Settings) -> None:
    root = Path(server_settings.resources.path)
    # over server.max_body_mb (10,485 bytes): that limit is not this route's
    _, body, _ = await api.call("POST", "/api/v1/resources?path=in", data=form(("a.bin", b"a" * 20_000)))
    assert body["data"] == [{"path": "in/a.bin", "size": 20_000}]
    await api.call("POST", "/api/v1/resources?path=in", data=form(("b.bin", b"b" * 35_000)), expect=413)
    # chunked (no Content-Length): refused while streaming, the partial file removed
    async def chunks():  # type: ignore[no-untyped-def]
        yield b"--xx\r\nContent-Disposition: form-data; name=\"files\"; filename=\"c.bin\"\r\n\r\n"
        for _ in range(20):
            yield b"c" * 2000
        yield b"\r\n--xx--\r\n"

    await api.call("POST", "/api/v1/resources?path=in", data=chunks(), expect=413,
                   headers={"Content-Type": "multipart/form-data; boundary=xx"})
    assert sorted(p.name for p in (root / "in").iterdir()) == ["a.bin"]


async def test_upload_refusals(api: Api) -> None:
    await api.call("POST", "/api/v1/resources", data=form(("a.txt", b"a"), field="other"), expect=400)
    await api.call("POST", "/api/v1/resources", json={"not": "multipart"}, expect=400)
    await api.call("POST", "/api/v1/resources?path=in", data=form(("a.txt", b"a")))
    await api.call("POST", "/api/v1/resources?path=in/a.txt", data=form(("b.txt", b"b")), expect=400)
    _, body, _ = await api.call("POST", "/api/v1/resources", data=form(("../../evil.txt", b"e")))
    [saved] = body["data"]
    assert "/" not in saved["path"] and saved["size"] == 1  # the name is reduced to one part
    await api.call("POST", "/api/v1/resources", data=form(("a.txt", b"a")), admin=False, expect=401)


async def test_missing_things_are_404(api: Api) -> None:
    await api.call("GET", "/api/v1/resources?path=nope", expect=404)
    await api.call("GET", "/api/v1/resources/download?path=nope.txt", expect=404)
    await api.call("POST", "/api/v1/resources/operate", json={"operation": "delete", "path": "nope"},
                   expect=404)
    await api.call("POST", "/api/v1/resources/operate", json={"operation": "chmod", "path": "x"},
                   expect=400)
    await api.call("POST", "/api/v1/resources/operate", json={"operation": "delete", "path": ""},
                   expect=400)
    await api.call("GET", "/api/v1/resources/large-data/whatever.json", admin=False, expect=404)


async def test_large_data_urls_expire(api: Api, server_settings: Settings) -> None:
    downloads = resources.root_of(server_settings.resources.path) / resources.DOWNLOADS
    downloads.mkdir()
    old = resources.stamped_name("api-resp.json", time.time() - 1)
    fresh = resources.stamped_name("api-resp.json", time.time() + 60)
    for name in (old, fresh):
        (downloads / name).write_text('{"a": 1}')
    await api.call("GET", f"/api/v1/resources/large-data/{old}", admin=False, expect=404)
    _, body, resp = await api.call("GET", f"/api/v1/resources/large-data/{fresh}", admin=False)
    assert body == {"a": 1} and resp.content_type == "application/json"
    assert not (downloads / fresh).exists()
    await api.call("GET", f"/api/v1/resources/large-data/{fresh}", admin=False, expect=404)


async def test_files_posted_to_an_api_become_the_files_kwarg(
        api: Api, published: dict[str, Any], fake_worker: Any, server_settings: Settings) -> None:
    echo = await api.create("/api/v1/sync-apis", {"funcId": "demo__basic.echo"})
    data = form(("a.txt", b"alpha"), ("b.txt", b"beta"))
    data.add_field("note", "hi")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{echo['id']}/s", data=data, admin=False)
    assert body["note"] == "hi"
    uploads = resources.root_of(server_settings.resources.path) / resources.UPLOADS
    assert [(f["originalname"], f["size"], f["mimetype"]) for f in body["files"]] == [
        ("a.txt", 5, "application/octet-stream"), ("b.txt", 4, "application/octet-stream")]
    for f in body["files"]:
        assert Path(f["filePath"]).parent == uploads
        assert resources.expiry_of(Path(f["filePath"]).name) is not None
    plus = await api.create("/api/v1/sync-apis", {"funcId": "demo__basic.plus"})
    _, body, _ = await api.call("POST", f"/api/v1/sync/{plus['id']}/s", data=form(("a.txt", b"a")),
                                admin=False, expect=400)
    assert "files" in body["detail"]["unknown"]
    await api.call("POST", "/api/v1/func/demo__basic.echo", data=form(("a.txt", b"a")), expect=400)
