"""Admin credentials and secrets at rest: list and revoke over HTTP and the CLI (a revoked
token is refused by every Server within a second), fixedField secrets encrypted and never
answered, ``fluxfunc admin rotate-secret``, and a short or placeholder secret refused at start."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from tests.conftest import RedisServer
from tests.server.conftest import Api
from tests.server.processes import write_config

from fluxfunc_common.crypto import Cipher, hash_token, new_token
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, open_store
from fluxfunc_server.adminauth import TOKEN_CACHE_SECONDS, sign_request
from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import CTX

FIELD_SECRET = "fixed-field-secret-4711"


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "admin", *args,
                           "--config", str(config)], capture_output=True, text=True, timeout=60,
                          check=check)


async def test_list_and_revoke_over_http(api: Api) -> None:
    other = new_token()
    await api.ctx.store.add_admin_token("tok-other", hash_token(other), "ci robot")
    await api.ctx.store.add_access_key("ak-one", api.ctx.cipher.encrypt("ak-secret"), "sdk")
    _, body, _ = await api.call("GET", "/api/v1/admin/tokens")
    listed = {t["id"]: t for t in body["data"]}
    assert listed["tok-other"]["name"] == "ci robot" and listed["tok-other"]["revoked"] is False
    assert hash_token(other) not in str(body) and other not in str(body)
    _, body, _ = await api.call("GET", "/api/v1/admin/access-keys")
    assert [k["id"] for k in body["data"]] == ["ak-one"] and "v2:" not in str(body)
    bearer = {"Authorization": f"Bearer {other}"}
    await api.call("GET", "/api/v1/scripts", admin=False, headers=bearer)  # cached as valid
    await api.call("POST", "/api/v1/admin/tokens/tok-other/revoke")
    await api.call("GET", "/api/v1/scripts", admin=False, headers=bearer, expect=401)
    _, body, _ = await api.call("GET", "/api/v1/admin/tokens")
    assert {t["id"]: t["revoked"] for t in body["data"]}["tok-other"] is True
    signed = sign_request("ak-one", "ak-secret", "GET", "/api/v1/funcs")
    await api.call("GET", "/api/v1/funcs", admin=False, headers=signed)
    await api.call("POST", "/api/v1/admin/access-keys/ak-one/revoke")
    signed = sign_request("ak-one", "ak-secret", "GET", "/api/v1/funcs")
    await api.call("GET", "/api/v1/funcs", admin=False, headers=signed, expect=401)
    await api.call("POST", "/api/v1/admin/access-keys/ak-one/revoke", expect=404)
    await api.call("POST", "/api/v1/admin/tokens/tok-nope/revoke", expect=404)
    await api.call("GET", "/api/v1/admin/tokens", admin=False, expect=401)


async def test_revocation_reaches_every_server_within_a_second(
        api: Api, aiohttp_client: Callable[..., Awaitable[TestClient]],
        server_settings: Settings) -> None:
    """Another Server process (here: another app on the same store) that has the token cached
    refuses it once its cache entry is older than ``TOKEN_CACHE_SECONDS`` (< 1 s)."""
    assert TOKEN_CACHE_SECONDS < 1
    token = new_token()
    await api.ctx.store.add_admin_token("tok-shared", hash_token(token), "shared")
    other = await aiohttp_client(create_app(server_settings, catalog_ttl=0))
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await other.get("/api/v1/scripts", headers=bearer)).status == 200  # now cached there
    await api.call("POST", "/api/v1/admin/tokens/tok-shared/revoke")
    await asyncio.sleep(TOKEN_CACHE_SECONDS + 0.05)
    assert (await other.get("/api/v1/scripts", headers=bearer)).status == 401
    assert other.app is not None
    await other.app[CTX].store.close()


@pytest.mark.usefixtures("published")
async def test_fixed_field_secret_is_encrypted_and_never_answered(api: Api) -> None:
    auth = {"type": "fixedField", "location": "header", "field": "X-Key", "value": FIELD_SECRET}
    created = await api.create("/api/v1/async-apis", {"funcId": "demo__basic.echo", "apiAuth": auth})
    aid = created["id"]
    assert FIELD_SECRET not in str(created)
    _, listed, _ = await api.call("GET", "/api/v1/async-apis")
    _, one, _ = await api.call("GET", f"/api/v1/async-apis/{aid}")
    for answer in (listed, one):
        assert FIELD_SECRET not in str(answer) and "valueCipher" not in str(answer)
    assert one["data"]["apiAuth"] == {"type": "fixedField", "location": "header", "field": "X-Key"}
    stored = await api.ctx.store.get(Entity.ASYNC_API, aid)
    assert FIELD_SECRET not in str(stored)
    assert stored["apiAuth"]["valueCipher"].startswith("v2:")
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, expect=401, headers={"X-Key": "no"})
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, headers={"X-Key": FIELD_SECRET})
    # a PATCH that leaves apiAuth alone keeps the sealed value working
    await api.call("PATCH", f"/api/v1/async-apis/{aid}", json={"note": "n"})
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, headers={"X-Key": FIELD_SECRET})


def _config(tmp_path: Path, redis_server: RedisServer, namespace: str, **top: object) -> Path:
    config = write_config(tmp_path / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace=namespace, store_url=f"sqlite:///{tmp_path / 'store.db'}")
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, **top}))
    return config


def test_cli_lists_and_revokes(tmp_path: Path, redis_server: RedisServer, namespace: str) -> None:
    config = _config(tmp_path, redis_server, namespace)
    token = cli(config, "create-token", "--name", "robot").stdout.strip().splitlines()[-1]
    ak_id = cli(config, "create-access-key", "--name", "sdk").stdout.strip().splitlines()[-2]
    tokens = cli(config, "list-tokens").stdout
    [line] = [ln for ln in tokens.splitlines() if "\trobot\t" in ln]
    token_id = line.split("\t")[0]
    assert token not in tokens and hash_token(token) not in tokens and "revoked" not in line
    assert ak_id in cli(config, "list-access-keys").stdout
    cli(config, "revoke-token", token_id)
    listed = cli(config, "list-tokens").stdout.splitlines()
    assert next(ln for ln in listed if ln.startswith(token_id)).endswith("\trevoked")
    cli(config, "revoke-access-key", ak_id)
    assert ak_id not in cli(config, "list-access-keys").stdout
    missing = cli(config, "revoke-access-key", ak_id, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr and "Traceback" not in missing.stderr


async def test_rotate_secret(tmp_path: Path, redis_server: RedisServer, namespace: str,
                             make_settings: Callable[..., Settings]) -> None:
    """Everything sealed under the old secret (either format) is re-sealed under the new one;
    the old secret is only needed in ``previous_secrets`` until then."""
    old_secret, new_secret = "old-secret-" + "o" * 30, "new-secret-" + "n" * 30
    old = Cipher(old_secret)
    config = _config(tmp_path, redis_server, namespace, secret=old_secret)
    ak_id = cli(config, "create-access-key").stdout.strip().splitlines()[-2]
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = make_settings(store={"url": store_url})
    async with open_store(settings.store) as store:
        await store.create(Entity.ENV_VARIABLE, {"id": "DB_PASSWORD", "valueType": "password",
                                                 "value": None, "valueCipher": old.encrypt("pw")})
        first_format_key = base64.urlsafe_b64encode(hashlib.sha256(old_secret.encode()).digest())
        legacy = Fernet(first_format_key).encrypt(b"legacy-pw").decode()
        await store.create(Entity.ENV_VARIABLE, {"id": "OLD_ONE", "valueType": "password",
                                                 "value": None, "valueCipher": legacy})
        clear = {"type": "fixedField", "fields": [  # in clear, as an earlier version stored it
            {"location": "header", "field": "X-Key", "value": FIELD_SECRET}]}
        await store.create(Entity.SYNC_API, {"id": "sapi-old", "funcId": "f.f", "apiAuth": clear})
    rotated = _config(tmp_path, redis_server, namespace, secret=new_secret,
                      previous_secrets=[old_secret])
    done = cli(rotated, "rotate-secret")
    assert "1 access key(s), 3 entity(ies)" in done.stdout, done.stdout + done.stderr
    new = Cipher(new_secret)
    async with open_store(settings.store) as store:
        assert new.decrypt(await store.access_key_secret(ak_id) or "")
        env = await store.get(Entity.ENV_VARIABLE, "DB_PASSWORD")
        assert env["valueCipher"].startswith("v2:") and new.decrypt(env["valueCipher"]) == "pw"
        assert new.decrypt((await store.get(Entity.ENV_VARIABLE, "OLD_ONE"))["valueCipher"]) == "legacy-pw"
        api = await store.get(Entity.SYNC_API, "sapi-old")
        assert FIELD_SECRET not in str(api)
        assert new.decrypt(api["apiAuth"]["fields"][0]["valueCipher"]) == FIELD_SECRET
    # without the old secret nothing can be rotated: one clear line, nothing changed
    lost = _config(tmp_path, redis_server, namespace, secret="third-secret-" + "t" * 30)
    failed = cli(lost, "rotate-secret", check=False)
    assert failed.returncode == 2 and "previous_secrets" in failed.stderr


@pytest.mark.parametrize("module", ["fluxfunc_server", "fluxfunc_worker"])
@pytest.mark.parametrize("secret", ["test-secret", "change-me-to-a-long-random-string"])
def test_services_refuse_a_weak_secret(tmp_path: Path, redis_server: RedisServer, namespace: str,
                                       secret: str, module: str) -> None:
    config = _config(tmp_path, redis_server, namespace, secret=secret)
    done = subprocess.run([sys.executable, "-m", module, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "secret" in line and ("too short" in line or "placeholder" in line)
