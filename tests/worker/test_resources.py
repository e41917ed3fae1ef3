"""``DFF.RSRC``, ``DFF.RESP_FILE`` and ``DFF.RESP_LARGE_DATA`` in a real worker process: what
the task result carries for the Server, and the paths a script may not reach."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common import resources
from fluxfunc_common.envelope import TaskStatus

SCRIPT = '''
@DFF.API("File")
def file(name="out/a.txt"):
    path = DFF.RSRC(name)
    import os
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("hi")
    return DFF.RESP_FILE(name, download="report.txt", auto_delete=True, headers={"X-A": "b"})

@DFF.API("Missing")
def missing():
    return DFF.RESP_FILE("nope.csv")

@DFF.API("Where")
def where(path):
    return DFF.RSRC(path)

@DFF.API("Large")
def large():
    return DFF.RESP_LARGE_DATA("a,b\\n1,2\\n", "csv")
'''


async def test_resp_file_and_large_data_results(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__res", SCRIPT)
    workers("w")
    root = Path(bench.settings.resources.path)  # tmp_path: already a real path
    done = await bench.result(await bench.enqueue("demo__res.file"))
    assert done.status is TaskStatus.SUCCESS, done.exception
    resp = done.response
    assert resp is not None and resp.file_path == "out/a.txt" and resp.auto_delete
    assert resp.download == "report.txt" and resp.headers == {"X-A": "b"} and not resp.large_data
    assert (root / "out" / "a.txt").read_text() == "hi"

    large = await bench.result(await bench.enqueue("demo__res.large"))
    assert large.status is TaskStatus.SUCCESS, large.exception
    resp = large.response
    assert resp is not None and resp.large_data and resp.auto_delete and resp.download is False
    assert resp.file_path is not None and resp.file_path.startswith(".downloads/")
    name = Path(resp.file_path).name
    assert name.endswith("_api-resp.csv") and resources.expiry_of(name) is not None
    assert (root / resp.file_path).read_text() == "a,b\n1,2\n"

    inside = await bench.result(await bench.enqueue("demo__res.where", {"path": "/x/y.txt"}))
    assert inside.result == str(root / "x" / "y.txt")  # a leading / is ignored, as in DataFlux Func


async def test_missing_files_and_escaping_paths_fail_the_task(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__res", SCRIPT)
    workers("w")
    missing = await bench.result(await bench.enqueue("demo__res.missing"))
    assert missing.status is TaskStatus.FAILURE
    assert "No such file in the resource directory: nope.csv" in (missing.exception or "")
    for path in ("../x", "a/../../x", "a\x00b", "n" * 300):
        out = await bench.result(await bench.enqueue("demo__res.where", {"path": path}))
        assert out.status is TaskStatus.FAILURE, path
        assert "DFF.RSRC" in (out.exception or ""), out.exception
