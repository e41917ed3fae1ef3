"""The resource directory end to end, with a real Server and Worker: a 200 MB streamed upload
(the Server's memory is measured), Range downloads, refused traversal, ``DFF.RESP_FILE``,
``DFF.RESP_LARGE_DATA`` and files posted to a function."""

from __future__ import annotations

import io
import os
import secrets
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from tests.conftest import RedisServer
from tests.e2e.test_server_worker import Client, _wait_for_worker
from tests.server.processes import create_token, running, server, worker, write_config

from fluxfunc_common.proc.localredis import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-resources")]

SCRIPT = '''
import os

@DFF.API("Report")
def report(rows=3):
    path = DFF.RSRC("/reports/out.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("id,name\\n")
        for i in range(rows):
            f.write(f"{i},n{i}\\n")
    return DFF.RESP_FILE("reports/out.csv")

@DFF.API("Escape")
def escape():
    return DFF.RSRC("../outside.txt")

@DFF.API("Large")
def large(n=1000):
    return DFF.RESP_LARGE_DATA({"items": list(range(n))})

@DFF.API("Receive")
def receive(files=None, note=None):
    out = []
    for f in files:
        with open(f["filePath"], "rb") as fh:
            text = fh.read().decode()
        out.append({"name": f["originalname"], "size": f["size"], "type": f["mimetype"],
                    "text": text})
    return {"note": note, "files": out}
'''
MB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB; byte i of an upload is i % 256


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory,
               redis_server: RedisServer) -> Iterator[tuple[Client, Path, Any]]:
    """Server + worker sharing one resource directory; (client, directory, server service)."""
    tmp = tmp_path_factory.mktemp("e2e-resources")
    root = tmp / "res"
    port = free_port()
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace="e2e" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port,
                          resources={"path": str(root)}, worker={"concurrency": 2})
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp, tmp), ready_url=f"{base}/healthz") as server_proc, \
            running(worker(config, tmp, tmp)) as worker_proc:
        client = Client(base, create_token(config))
        client.data(client.post("/api/v1/scripts", {"id": "demo__res", "code": SCRIPT}))
        client.data(client.post("/api/v1/scripts/demo__res/publish"))
        _wait_for_worker(client, worker_proc)
        yield client, root, server_proc


def sync_api(client: Client, func: str) -> str:
    return str(client.data(client.post("/api/v1/sync-apis", {"funcId": f"demo__res.{func}"}))["id"])


class StreamedUpload(io.RawIOBase):
    """A multipart body of ``size`` bytes in field ``files``, generated while it is sent."""

    def __init__(self, name: str, size: int, boundary: str) -> None:
        self.head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                     f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.size, self.sent = size, 0
        self.total = len(self.head) + size + len(self.tail)
        self.pending = self.head

    def __len__(self) -> int:
        return self.total

    def read(self, n: int = -1) -> bytes:
        if not self.pending and self.sent < self.size:
            take = min(MB, self.size - self.sent)
            self.pending = BLOCK[:take]
            self.sent += take
            if self.sent == self.size:
                self.pending += self.tail
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def rss_with_children(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def test_a_200_mb_upload_is_streamed_and_downloaded_by_range(deployment: tuple[Client, Path, Any]) -> None:
    client, root, server_proc = deployment
    size = 200 * MB
    pid = server_proc.proc.pid
    before = rss_with_children(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_with_children(pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    boundary = secrets.token_hex(12)
    try:
        resp = client.http.post(client.base + "/api/v1/resources?path=big", timeout=600,
                                data=StreamedUpload("blob.bin", size, boundary),
                                headers={**client.admin,
                                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
    finally:
        done.set()
        sampler.join()
    assert client.data(resp) == [{"path": "big/blob.bin", "size": size}]
    growth = (peak[0] - before) / MB
    print(f"server RSS before {before / MB:.1f} MB, peak {peak[0] / MB:.1f} MB (+{growth:.1f} MB)")
    assert growth < 50, f"the Server grew by {growth:.1f} MB during a 200 MB upload"
    assert (root / "big" / "blob.bin").stat().st_size == size

    listing = client.data(client.get("/api/v1/resources", params={"path": "big"}))
    assert [(e["name"], e["type"], e["size"]) for e in listing] == [("blob.bin", "file", size)]
    start = 150 * MB + 7
    resp = client.http.get(client.base + "/api/v1/resources/download", timeout=90,
                           params={"path": "big/blob.bin"},
                           headers={**client.admin, "Range": f"bytes={start}-{start + 999}"})
    assert resp.status_code == 206, resp.text[:300]
    assert resp.content == bytes((start + i) % 256 for i in range(1000))
    assert resp.headers["Content-Range"] == f"bytes {start}-{start + 999}/{size}"


def test_paths_leaving_the_directory_are_refused(deployment: tuple[Client, Path, Any],
                                                 tmp_path: Path) -> None:
    client, root, _ = deployment
    (tmp_path / "secret.txt").write_text("secret")
    root.mkdir(parents=True, exist_ok=True)  # the Server makes it at its first write; this may run first
    os.symlink(tmp_path, root / "escape")
    bad = ["..", "../etc", "a/../../x", "/etc", "/etc/passwd", "a\x00b", "n" * 300,
           "escape", "escape/secret.txt"]
    for path in bad:
        for resp in (client.get("/api/v1/resources", params={"path": path}),
                     client.get("/api/v1/resources/download", params={"path": path}),
                     client.post("/api/v1/resources/operate", {"operation": "mkdir", "path": path})):
            assert resp.status_code == 400, (path, resp.status_code, resp.text[:300])
    (root / "stay.txt").write_text("stay")
    resp = client.post("/api/v1/resources/operate",
                       {"operation": "move", "path": "stay.txt", "target": "../moved"})
    assert resp.status_code == 400 and (root / "stay.txt").exists()
    resp = client.http.post(client.base + "/api/v1/resources", params={"path": "../up"},
                            files=[("files", ("a.txt", b"a"))], headers=client.admin, timeout=60)
    assert resp.status_code == 400
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("../../slipped.txt", "x")
    resp = client.http.post(client.base + "/api/v1/resources", params={"path": "zips"},
                            files=[("files", ("slip.zip", slip.getvalue()))], headers=client.admin,
                            timeout=60)
    client.data(resp)
    resp = client.post("/api/v1/resources/operate", {"operation": "unzip", "path": "zips/slip.zip"})
    assert resp.status_code == 400
    assert not (root.parent / "slipped.txt").exists() and (tmp_path / "secret.txt").exists()
    client.data(client.post("/api/v1/resources/operate", {"operation": "delete", "path": "escape"}))
    assert (tmp_path / "secret.txt").exists()  # the link went, not what it pointed to


def test_the_resource_api_needs_admin(deployment: tuple[Client, Path, Any]) -> None:
    client, _, _ = deployment
    assert client.get("/api/v1/resources", admin=False).status_code == 401
    assert client.get("/api/v1/resources/download", admin=False, params={"path": "x"}).status_code == 401
    assert client.post("/api/v1/resources/operate", {"operation": "mkdir", "path": "x"},
                       admin=False).status_code == 401


def test_operations_mkdir_zip_unzip_move_delete(deployment: tuple[Client, Path, Any]) -> None:
    client, root, _ = deployment

    def op(**body: Any) -> Any:
        return client.data(client.post("/api/v1/resources/operate", body))

    op(operation="mkdir", path="ops/src/deep")
    (root / "ops/src/deep/a.txt").write_text("alpha")
    assert op(operation="zip", path="ops/src") == {"path": "ops/src.zip"}
    assert op(operation="unzip", path="ops/src.zip", target="ops/copy") == {"path": "ops/copy"}
    assert (root / "ops/copy/src/deep/a.txt").read_text() == "alpha"
    assert op(operation="move", path="ops/copy", target="ops/moved") == {"path": "ops/moved"}
    assert client.post("/api/v1/resources/operate",
                       {"operation": "move", "path": "ops/src", "target": "ops/moved"}).status_code == 409
    op(operation="delete", path="ops")
    assert not (root / "ops").exists()


def test_resp_file_answers_with_the_csv_a_function_wrote(deployment: tuple[Client, Path, Any]) -> None:
    client, _, _ = deployment
    resp = client.get(f"/api/v1/sync/{sync_api(client, 'report')}", admin=False,
                      params={"kwargs": '{"rows": 2}'})
    assert resp.status_code == 200, resp.text[:500]
    assert resp.content == b"id,name\n0,n0\n1,n1\n"
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="out.csv"')
    resp = client.get(f"/api/v1/sync/{sync_api(client, 'escape')}", admin=False)
    assert resp.status_code == 599 and "DFF.RSRC" in resp.text, resp.text[:500]


def test_resp_large_data_is_served_once(deployment: tuple[Client, Path, Any]) -> None:
    client, root, _ = deployment
    api = sync_api(client, "large")
    resp = client.post(f"/api/v1/sync/{api}", {"kwargs": {"n": 5}}, admin=False)
    assert resp.status_code == 200 and resp.json() == {"items": [0, 1, 2, 3, 4]}
    assert resp.headers["Content-Type"].startswith("application/json")
    # the direct answer consumed it: the Server deletes the file right after sending it, so
    # the client may see the answer a moment before the file is gone
    deadline = time.monotonic() + 30
    while any((root / ".downloads").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any((root / ".downloads").iterdir())
    wrapped = client.post(f"/api/v1/sync/{api}", {"kwargs": {"n": 3}, "options": {"unbox": False}},
                          admin=False)
    url = client.data(wrapped)["result"]["url"]
    first = client.get(url, admin=False)
    assert first.status_code == 200 and first.json() == {"items": [0, 1, 2]}
    assert client.get(url, admin=False).status_code == 404


def test_a_multipart_call_delivers_two_files(deployment: tuple[Client, Path, Any]) -> None:
    client, root, _ = deployment
    api = sync_api(client, "receive")
    resp = requests.post(f"{client.base}/api/v1/sync/{api}/s", data={"note": "two"}, timeout=60,
                         files=[("files", ("a.txt", b"alpha", "text/plain")),
                                ("files", ("b.csv", b"x,y\n1,2\n", "text/csv"))])
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json() == {"note": "two", "files": [
        {"name": "a.txt", "size": 5, "type": "text/plain", "text": "alpha"},
        {"name": "b.csv", "size": 8, "type": "text/csv", "text": "x,y\n1,2\n"},
    ]}
    stored = sorted(p.name.split("_", 2)[2] for p in (root / ".uploads").iterdir())
    assert stored == ["a.txt", "b.csv"]  # under .uploads/ with an expiry stamp (janitor)


def test_a_multipart_call_to_an_async_api_delivers_the_files(
        deployment: tuple[Client, Path, Any]) -> None:
    client, _, _ = deployment
    aid = client.data(client.post("/api/v1/async-apis", {"funcId": "demo__res.receive"}))["id"]
    resp = requests.post(f"{client.base}/api/v1/async/{aid}/s", timeout=60,
                         files=[("files", ("one.txt", b"1", "text/plain")),
                                ("files", ("two.txt", b"22", "text/plain"))])
    task_id = client.data(resp)["id"]
    task = client.data(client.get(f"/api/v1/tasks/{task_id}?wait=30", admin=False))
    assert task["status"] == "success", task
    assert [(f["name"], f["text"]) for f in task["result"]["files"]] == [("one.txt", "1"), ("two.txt", "22")]
