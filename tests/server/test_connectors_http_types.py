"""``/api/v1/connectors`` with the HTTP types: a ``dataway`` connector is tested against a
protocol-checking receiver (tests/guance_receiver.py) before it is saved, its token sealed at
rest and masked in answers; a wrong token is a 400 saying authentication failed."""

from __future__ import annotations

import uuid

from aiohttp import web
from tests.guance_receiver import Receiver
from tests.server.conftest import Api

from fluxfunc_common.connectors.sealing import unseal

PATH = "/api/v1/connectors"
TOKEN = "tkn_h17_api_0123456789"


async def test_dataway_token_is_sealed_and_tested(api: Api) -> None:
    receiver = Receiver(token=TOKEN)
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        cid = f"dataway_{uuid.uuid4().hex[:8]}"
        bad = {"host": "127.0.0.1", "port": port, "token": "nope"}
        _, answer, _ = await api.call("POST", PATH, json={"id": cid, "type": "dataway",
                                                          "config": bad}, expect=400)
        assert "authentication failed" in str(answer["message"])
        await api.call("GET", f"{PATH}/{cid}", expect=404)
        config = {**bad, "token": TOKEN}
        created = await api.create(PATH, {"id": cid, "type": "dataway", "config": config})
        assert created["config"]["token"] == "******" and TOKEN not in str(created)
        raw = await api.ctx.store.get_connector(cid)
        assert "token" not in raw.config and TOKEN not in str(raw.config)
        assert unseal(raw.config, api.ctx.cipher).token == TOKEN
    finally:
        await runner.cleanup()
