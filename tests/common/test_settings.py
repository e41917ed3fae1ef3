"""Settings: YAML + env overrides, strictness, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fluxfunc_common.errors import ConfigError
from fluxfunc_common.settings import Settings, load_settings


def test_defaults_match_spec() -> None:
    s = load_settings(environ={})
    assert s.server.port == 8088
    assert s.redis.namespace == "fluxfunc"
    assert s.worker.queues == ["default", "cron", "async"]
    assert s.worker.lease_seconds == 60 and s.worker.heartbeat_interval == 15
    assert s.worker.max_deliveries == 5
    assert s.store.url.startswith("sqlite://")
    assert s.tasks.result_ttl == 3600


def test_yaml_then_env_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("secret: s3-0123456789abcdef0123456789abcdef\n"
                   "redis: {url: 'redis://a:1/0', namespace: ff}\nworker: {concurrency: 3}\n")
    s = load_settings(cfg, environ={"FLUXFUNC_WORKER__CONCURRENCY": "7", "FLUXFUNC_WORKER__QUEUES": "a, b"})
    assert s.redis.url == "redis://a:1/0" and s.redis.namespace == "ff"
    assert s.worker.concurrency == 7
    assert s.worker.queues == ["a", "b"]
    assert s.require_secret() == "s3-0123456789abcdef0123456789abcdef"


def test_config_path_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {port: 9001}\n")
    assert load_settings(environ={"FLUXFUNC_CONFIG": str(cfg)}).server.port == 9001


def test_numeric_looking_secret_stays_text() -> None:
    s = load_settings(environ={"FLUXFUNC_SECRET": "0123" * 8})
    assert s.require_secret() == "0123" * 8


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("worker: {concurency: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert "worker.concurency" in info.value.message and str(cfg) in info.value.message
    assert "\n" not in info.value.message


def test_wrong_type_and_bad_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server: {port: 'many'}\n")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(cfg, environ={})
    cfg.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_env_unknown_section_rejected() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(environ={"FLUXFUNC_BOGUS__X": "1"})


def test_missing_secret_is_clear() -> None:
    with pytest.raises(ConfigError, match="secret is not set"):
        Settings().require_secret()


@pytest.mark.parametrize(("secret", "why"), [("test-secret", "too short"), ("x" * 31, "too short"),
                                             ("change-me-to-a-long-random-string", "placeholder")])
def test_short_or_placeholder_secret_is_refused(secret: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_settings(environ={"FLUXFUNC_SECRET": secret}).require_secret()
    assert Settings(secret="y" * 32).require_secret() == "y" * 32  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.server.port = 1  # type: ignore[misc]
    assert s.with_overrides(server={"port": 1}).server.port == 1


def test_bad_store_scheme() -> None:
    with pytest.raises(ConfigError, match="store"):
        load_settings(environ={"FLUXFUNC_STORE__URL": "postgres://x/y"})
