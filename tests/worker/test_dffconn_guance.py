"""``DFF.CONN`` of ``datakit`` and ``dataway`` connectors against a local receiver that checks
every request against the documented DataKit / DataWay HTTP API (tests/guance_receiver.py; no
DataKit binary is available here): writes, DQL queries, the DataWay token (sealed at rest,
sent on every request, masked in task output) and the connection test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from tests.guance_receiver import ProtocolError, Receiver, parse_line
from tests.worker.conftest import Bench, WorkerProcess
from tests.worker.dffconn_support import add_connector, unique

from fluxfunc_common.connectors.testing import ConnectionTestFailed, probe
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType
from fluxfunc_common.envelope import TaskStatus

TOKEN = "tkn_h17_0123456789abcdef"

SCRIPT = '''
@DFF.API("Guance")
def guance(token_echo=False):
    dk = DFF.CONN("{conn}")
    out = {{}}
    out["metric"] = list(dk.write_metric("cpu", tags={{"host": "a b"}},
                                         fields={{"load": 0.5, "n": 2}}, timestamp=1700000000))
    out["metrics"] = list(dk.write_metrics([
        {{"measurement": "cpu", "tags": {{"host": "b"}}, "fields": {{"load": 1.5, "n": 3}},
          "timestamp": 1700000001000}}]))
    out["logging"] = list(dk.write_logging("app", tags={{"level": "info"}},
                                           fields={{"message": 'said "hi"'}}))
    dk.write_loggings([{{"measurement": "app", "fields": {{"message": "two"}}}}])
    status, res = dk.query("M::cpu:(load, n)", dict_output=True)
    out["query"] = [status, res]
    out["raw"] = dk.query("L::app", raw=True)[1]["content"][0]["series"][0]["name"]
    if token_echo:
        print("token is {token}")
    return out
'''


@pytest.fixture
async def receiver_of() -> AsyncIterator[Callable[..., asyncio.Future[tuple[Receiver, int]]]]:
    runners: list[web.AppRunner] = []

    async def start(token: str | None = None) -> tuple[Receiver, int]:
        receiver = Receiver(token=token)
        runner = web.AppRunner(receiver.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return receiver, runner.addresses[0][1]

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


async def _run(bench: Bench, workers: Callable[..., WorkerProcess], cid: str,
               token_echo: bool = False) -> dict[str, object]:
    script = unique("demo__guance")
    await bench.publish(script, SCRIPT.format(conn=cid, token=TOKEN))
    w = workers("w")
    result = await bench.result(await bench.enqueue(f"{script}.guance",
                                                    {"token_echo": token_echo}))
    assert result.status is TaskStatus.SUCCESS, result.exception
    assert w.stop() == 0
    return {"result": result.result, "print": result.print_logs or ""}


def _check(receiver: Receiver, out: dict[str, object]) -> None:
    assert receiver.violations == []
    assert out["metric"] == [200, {}] and out["metrics"] == [200, {}]
    assert out["logging"] == [200, {}]
    assert [(r.category, r.measurement) for r in receiver.received] == [
        ("metric", "cpu"), ("metric", "cpu"), ("logging", "app"), ("logging", "app")]
    first = receiver.received[0]
    assert first.tags == {"host": "a b"} and first.fields == {"load": 0.5, "n": 2}
    assert first.timestamp == 1700000000 * 10**9
    assert receiver.received[1].timestamp == 1700000001 * 10**9
    assert receiver.received[2].fields == {"message": 'said "hi"'}
    assert out["query"] == [200, {"series": [[
        {"time": 1700000000000, "load": 0.5, "n": 2, "tags": {}},
        {"time": 1700000001000, "load": 1.5, "n": 3, "tags": {}}]]}]
    assert out["raw"] == "app"
    assert receiver.queries[0]["query"] == "M::cpu:(load, n)"


async def test_datakit(bench: Bench, workers: Callable[..., WorkerProcess],
                       receiver_of: Callable[..., asyncio.Future[tuple[Receiver, int]]]) -> None:
    receiver, port = await receiver_of()
    cid = unique("datakit")
    await add_connector(bench, cid, "datakit", host="127.0.0.1", port=port, source="h17test")
    out = await _run(bench, workers, cid)
    _check(receiver, out["result"])  # type: ignore[arg-type]


async def test_dataway_token(bench: Bench, workers: Callable[..., WorkerProcess],
                             receiver_of: Callable[..., asyncio.Future[tuple[Receiver, int]]]
                             ) -> None:
    receiver, port = await receiver_of(TOKEN)
    cid = unique("dataway")
    await add_connector(bench, cid, "dataway", url=f"http://127.0.0.1:{port}", token=TOKEN)
    stored = await bench.store.get_connector(cid)
    assert "token" not in stored.config and TOKEN not in str(stored.config)
    assert "tokenCipher" in stored.config
    out = await _run(bench, workers, cid, token_echo=True)
    _check(receiver, out["result"])  # type: ignore[arg-type]
    assert "token is" in str(out["print"]) and TOKEN not in str(out["print"])


async def test_dataway_wrong_token_fails_the_call(
        bench: Bench, workers: Callable[..., WorkerProcess],
        receiver_of: Callable[..., asyncio.Future[tuple[Receiver, int]]]) -> None:
    receiver, port = await receiver_of(TOKEN)
    cid = unique("dataway")
    await add_connector(bench, cid, "dataway", host="127.0.0.1", port=port, token="wrong")
    script = unique("demo__guance")
    await bench.publish(script, SCRIPT.format(conn=cid, token=TOKEN))
    w = workers("w")
    result = await bench.result(await bench.enqueue(f"{script}.guance"))
    assert result.status is not TaskStatus.SUCCESS
    assert "401" in str(result.exception) and "wrong" not in str(result.model_dump())
    assert receiver.received == [] and receiver.violations
    assert w.stop() == 0


async def test_connection_check(
        receiver_of: Callable[..., asyncio.Future[tuple[Receiver, int]]]) -> None:
    _, kit_port = await receiver_of()
    _, way_port = await receiver_of(TOKEN)
    await probe(ConnectorType.DATAKIT, ConnectorConfig(host="127.0.0.1", port=kit_port))
    await probe(ConnectorType.DATAWAY, ConnectorConfig(host="127.0.0.1", port=way_port,
                                                       token=TOKEN))
    with pytest.raises(ConnectionTestFailed, match="authentication failed"):
        await probe(ConnectorType.DATAWAY, ConnectorConfig(host="127.0.0.1", port=way_port,
                                                           token="nope"))
    with pytest.raises(ConnectionTestFailed, match="host unreachable"):
        await probe(ConnectorType.DATAKIT, ConnectorConfig(host="127.0.0.1", port=1, timeout=2))


def test_receiver_rejects_bad_line_protocol() -> None:
    assert parse_line('m,t=a f=1i,s="x y" 1700000000000000000', "metric", "n").fields == {
        "f": 1, "s": "x y"}
    for bad in ("m f=1", "m f= 1700000000000000000", 'm f="open 1700000000000000000',
                "m f=1x 1700000000000000000", "m f=1 170000000"):
        with pytest.raises(ProtocolError):
            parse_line(bad, "metric", "n")
