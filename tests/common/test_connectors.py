"""Connectors in common: the config model, secrets sealed and masked, failures explained, and
the ``connectors`` table on SQLite and MariaDB (raw rows hold ciphertext only)."""

from __future__ import annotations

import pytest

from fluxfunc_common.clock import FakeClock
from fluxfunc_common.connectors.sealing import masked, seal, secrets_of, unseal
from fluxfunc_common.connectors.testing import ConnectionTestFailed, check, explain
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType, StoredConnector
from fluxfunc_common.credentials import rotate_secret
from fluxfunc_common.crypto import Cipher, reseal_fields
from fluxfunc_common.errors import Conflict, NotFound
from fluxfunc_common.store import SqlStore

SECRET = "a-deployment-secret-for-the-connector-tests-0123"
CONFIG = ConnectorConfig.model_validate({
    "host": "db.example", "port": 3306, "user": "app", "password": "pw-1", "secretKey": "sk-2",
    "database": "app", "clientId": "c1", "topicHandlers": [{"topic": "a/#", "funcId": "s.f"}],
    "guanceAPIKey": "gk-3", "somethingElse": 1})


def test_seal_unseal_and_mask() -> None:
    cipher = Cipher(SECRET)
    sealed = seal(CONFIG, cipher)
    assert {"password", "secretKey", "guanceAPIKey"}.isdisjoint(sealed)
    assert all(str(sealed[k]).startswith("v2:") for k in ("passwordCipher", "secretKeyCipher",
                                                           "guanceAPIKeyCipher"))
    assert sealed["topicHandlers"] == [{"topic": "a/#", "funcId": "s.f"}] and sealed["somethingElse"] == 1
    opened = unseal(sealed, cipher)
    assert (opened.password, opened.secret_key, opened.model_extra) == (
        "pw-1", "sk-2", {"guanceAPIKey": "gk-3", "somethingElse": 1})
    assert sorted(secrets_of(opened)) == ["gk-3", "pw-1", "sk-2"]
    shown = masked(sealed)
    assert shown["password"] == shown["secretKey"] == shown["guanceAPIKey"] == "******"
    assert not any(k.endswith("Cipher") for k in shown) and "pw-1" not in str(shown)
    # rotate-secret re-seals every *Cipher field
    rotated = Cipher("the-next-deployment-secret-for-the-tests-4567", [SECRET])
    assert unseal(reseal_fields(sealed, rotated), rotated).password == "pw-1"


def test_explain_names_the_failure() -> None:
    assert explain(RuntimeError("(1045, \"Access denied for user 'root'\")")).startswith(
        "authentication failed")
    assert explain(RuntimeError("(1049, \"Unknown database 'x'\")")).startswith("database missing")
    assert explain(ConnectionRefusedError("Connection refused")).startswith("host unreachable")
    with pytest.raises(ConnectionTestFailed, match="redis connector test failed: host unreachable"):
        check(ConnectorType.REDIS, ConnectorConfig(host="127.0.0.1", port=1, timeout=2))


def test_config_server_list() -> None:
    assert ConnectorConfig(servers="a:1, b:2").server_list("x") == ["a:1", "b:2"]
    assert ConnectorConfig(host="h", port=5).server_list("x") == ["h:5"]
    assert ConnectorConfig().server_list("d:1") == ["d:1"]


@pytest.fixture
def store(sql_store: SqlStore) -> SqlStore:
    sql_store.clock = FakeClock(1_700_000_000.0)
    return sql_store


async def test_store_crud(store: SqlStore) -> None:
    cipher = Cipher(SECRET)
    row = StoredConnector(id="db1", type=ConnectorType.MYSQL, title="DB",
                          config=seal(CONFIG, cipher))
    created = await store.create_connector(row)
    assert created.create_time == created.update_time == 1_700_000_000.0
    with pytest.raises(Conflict):
        await store.create_connector(row)
    async with store.db.session() as s:
        raw = await s.fetchall("SELECT type, data FROM connectors WHERE id = ?", ("db1",))
    assert raw[0][0] == "mysql" and "pw-1" not in raw[0][1] and "passwordCipher" in raw[0][1]
    assert unseal((await store.get_connector("db1")).config, cipher).password == "pw-1"
    await store.create_connector(row.model_copy(update={"id": "a0"}))
    assert [c.id for c in await store.list_connectors()] == ["a0", "db1"]
    store.clock.advance(5)  # type: ignore[attr-defined]
    changed = await store.replace_connector(created.model_copy(update={"title": "renamed"}))
    assert (await store.get_connector("db1")).title == "renamed" and changed.update_time > created.update_time
    await store.replace_connector(changed)  # unchanged: still found (MySQL counts 0 rows)
    await store.delete_connector("db1")
    assert await store.find_connector("db1") is None
    with pytest.raises(NotFound):
        await store.delete_connector("db1")
    with pytest.raises(NotFound):
        await store.replace_connector(created)


async def test_rotate_secret_reseals_connectors(store: SqlStore) -> None:
    old, new = Cipher(SECRET), Cipher("the-next-deployment-secret-for-the-tests-4567", [SECRET])
    await store.create_connector(StoredConnector(id="c", type=ConnectorType.REDIS,
                                                 config=seal(CONFIG, old)))
    report = await rotate_secret(store, new)
    assert report.entities == 1
    config = (await store.get_connector("c")).config
    assert unseal(config, Cipher("the-next-deployment-secret-for-the-tests-4567")).password == "pw-1"


def test_server_list_port_without_host() -> None:
    """A ``port`` alone is on the default host, not silently the default port."""
    assert ConnectorConfig(port=4333).server_list("127.0.0.1:4222") == ["127.0.0.1:4333"]
