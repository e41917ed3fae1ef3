"""``GET/PUT /api/v1/python-packages`` on the in-process Server: validation, the resolved set
with script-set requirements, the change counter the workers poll, and each live worker's
published state."""

from __future__ import annotations

import json

from tests.server.conftest import Api

from fluxfunc_common import packages
from fluxfunc_common.heartbeat import describe

PATH = "/api/v1/python-packages"


async def test_the_list_is_validated_stored_and_announced(api: Api) -> None:
    ctx = api.ctx
    _, body, _ = await api.call("GET", PATH)
    assert body["data"]["packages"] == [] and body["data"]["resolved"]["hash"] == ""
    assert body["data"]["workers"] == [] and body["data"]["upToDate"] is True

    _, body, _ = await api.call("PUT", PATH, json={"packages": ["pyjokes==0.8.3", "", "# c",
                                                                 "requests>=2"]})
    data = body["data"]
    assert data["packages"] == ["pyjokes==0.8.3", "requests>=2"]
    assert data["resolved"]["lines"] == ["pyjokes==0.8.3", "requests>=2"]
    assert data["resolved"]["hash"] == packages.list_hash(["pyjokes==0.8.3", "requests>=2"])
    assert int(await ctx.redis.get(ctx.keys.python_packages_version())) == 1, "workers are told"

    _, body, _ = await api.call("PUT", PATH, json={"packages": "text-unidecode==1.3\npyjokes\n"})
    assert body["data"]["packages"] == ["text-unidecode==1.3", "pyjokes"]
    _, body, _ = await api.call("GET", PATH)
    assert body["data"]["packages"] == ["text-unidecode==1.3", "pyjokes"]


async def test_a_bad_line_is_a_400_and_the_list_stays(api: Api) -> None:
    await api.call("PUT", PATH, json={"packages": ["pyjokes"]})
    for bad, why in ((["pyjokes", "not valid!"], "line 2"), (["--index-url x"], "pip options"),
                     (["fluxfunc-worker"], "fluxfunc itself")):
        _, body, _ = await api.call("PUT", PATH, json={"packages": bad}, expect=400)
        assert why in body["message"], body
    await api.call("PUT", PATH, json={"packages": 3}, expect=400)
    await api.call("PUT", PATH, json={"other": []}, expect=400)
    _, body, _ = await api.call("GET", PATH)
    assert body["data"]["packages"] == ["pyjokes"]


async def test_admin_only(api: Api) -> None:
    await api.call("GET", PATH, admin=False, expect=401)
    await api.call("PUT", PATH, admin=False, json={"packages": []}, expect=401)


async def test_script_set_requirements_join_the_set_and_are_checked(api: Api) -> None:
    ctx = api.ctx
    await api.call("PUT", PATH, json={"packages": ["pyjokes"]})
    before = int(await ctx.redis.get(ctx.keys.python_packages_version()))
    await api.create("/api/v1/script-sets", {"id": "alpha", "requirements": "text-unidecode==1.3\n"})
    assert int(await ctx.redis.get(ctx.keys.python_packages_version())) == before + 1
    _, body, _ = await api.call("GET", PATH)
    resolved = body["data"]["resolved"]
    assert resolved["lines"] == ["pyjokes", "text-unidecode==1.3"]
    assert resolved["scriptSets"] == {"alpha": ["text-unidecode==1.3"]}
    assert body["data"]["packages"] == ["pyjokes"], "the deployment list alone"

    _, body, _ = await api.call("PATCH", "/api/v1/script-sets/alpha",
                                json={"requirements": "ok-pkg\nthis is bad"}, expect=400)
    assert "requirements" in body["message"] and "line 2" in body["message"]
    await api.call("POST", "/api/v1/script-sets", json={"id": "beta", "requirements": "-e ."},
                   expect=400)
    await api.call("DELETE", "/api/v1/script-sets/alpha")
    _, body, _ = await api.call("GET", PATH)
    assert body["data"]["resolved"]["lines"] == ["pyjokes"]


async def test_each_live_worker_shows_its_state(api: Api) -> None:
    ctx = api.ctx
    await api.call("PUT", PATH, json={"packages": ["pyjokes"]})
    wanted = packages.list_hash(["pyjokes"])
    for instance, state in (("w-ok", packages.WorkerPackages(instance="w-ok", state="ok", hash=wanted,
                                                             wanted=wanted, lines=1)),
                            ("w-bad", packages.WorkerPackages(instance="w-bad", state="failed",
                                                              wanted=wanted, error="pip: no luck"))):
        key = ctx.keys.svc("worker", instance)
        await ctx.redis.set(key, json.dumps(describe("worker", instance, 0.0)), ex=30)
        await ctx.redis.sadd(ctx.keys.svc_index(), key)
        await ctx.redis.set(ctx.keys.python_packages_status(instance), state.model_dump_json(), ex=30)
    await ctx.redis.set(ctx.keys.python_packages_status("w-gone"), "{}", ex=30)  # no heartbeat
    _, body, _ = await api.call("GET", PATH)
    workers = {w["instance"]: w for w in body["data"]["workers"]}
    assert set(workers) == {"w-ok", "w-bad"}
    assert workers["w-ok"]["state"] == "ok" and workers["w-ok"]["hash"] == wanted
    assert workers["w-bad"]["state"] == "failed" and workers["w-bad"]["error"] == "pip: no luck"
    assert workers["w-bad"]["host"], "the heartbeat's host when the state has none"
    assert body["data"]["upToDate"] is False
