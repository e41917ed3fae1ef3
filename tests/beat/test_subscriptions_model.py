"""Which subscriptions a connector carries, and when one counts as changed."""

from __future__ import annotations

from fluxfunc_beat.subscriptions import subscriptions_of
from fluxfunc_common.connectors.types import ConnectorType, StoredConnector


def _connector(kind: ConnectorType = ConnectorType.MQTT, **config: object) -> StoredConnector:
    return StoredConnector(id="c1", type=kind, config={"host": "h", **config})


def test_each_enabled_valid_handler_is_a_subscription() -> None:
    subs = subscriptions_of(_connector(topicHandlers=[
        {"topic": "a/#", "funcId": "s.f"},
        {"topic": "b", "funcId": "s.g", "queue": "q", "isDisabled": True},
        {"topic": "", "funcId": "s.f"},  # invalid: left out (logged)
        {"topic": "c", "funcId": "s.h", "queue": "q"},
    ]))
    assert [(s.handler.topic, s.handler.func_id, s.handler.queue) for s in subs] == [
        ("a/#", "s.f", None), ("c", "s.h", "q")]
    assert len({s.key for s in subs}) == 2
    assert len({s.client_id for s in subs}) == 2


def test_disabled_or_non_broker_connectors_have_none() -> None:
    handlers = [{"topic": "t", "funcId": "s.f"}]
    assert subscriptions_of(_connector(topicHandlers=handlers).model_copy(update={"is_disabled": True})) == []
    assert subscriptions_of(_connector(ConnectorType.MYSQL, topicHandlers=handlers)) == []
    assert subscriptions_of(_connector(topicHandlers="nonsense")) == []
    assert subscriptions_of(_connector()) == []


def test_a_config_change_changes_the_fingerprint_not_the_key() -> None:
    handlers = [{"topic": "t", "funcId": "s.f"}]
    (before,) = subscriptions_of(_connector(topicHandlers=handlers))
    (after,) = subscriptions_of(_connector(topicHandlers=handlers, passwordCipher="other"))
    (same,) = subscriptions_of(_connector(topicHandlers=handlers))
    assert before.key == after.key and before.client_id == after.client_id
    assert before.fingerprint != after.fingerprint
    assert before.fingerprint == same.fingerprint
