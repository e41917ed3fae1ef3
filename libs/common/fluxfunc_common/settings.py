"""Settings: one YAML file plus ``FLUXFUNC_<SECTION>__<KEY>`` environment overrides.

Loaded once in each ``__main__`` with :func:`load_settings`, frozen, then passed down.
Nothing else in the code base reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fluxfunc_common.crypto import check_secret
from fluxfunc_common.errors import ConfigError

ENV_PREFIX = "FLUXFUNC_"
DEFAULT_FILE = "fluxfunc.yaml"
# FLUXFUNC_* variables that are not settings: the config path, the heartbeat state dir, and
# the server address + admin token used by client commands (`fluxfunc deploy`).
# FLUXFUNC_PLAIN_VARIANTS=1 forces the plain variants of the fast paths (fluxfunc_common.fastpaths).
# FLUXFUNC_TRANSFER_PASSPHRASE seals/opens the secrets of `fluxfunc export`/`import`.
NOT_SETTINGS = frozenset({"FLUXFUNC_CONFIG", "FLUXFUNC_STATE_DIR", "FLUXFUNC_URL", "FLUXFUNC_TOKEN",
                          "FLUXFUNC_PLAIN_VARIANTS", "FLUXFUNC_TRANSFER_PASSPHRASE"})


class Section(BaseModel):
    """Base of every settings section: strict and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SentinelSettings(Section):
    hosts: list[str] = Field(min_length=1, description="host:port of each Sentinel")
    service: str = "mymaster"
    password: SecretStr | None = None
    sentinel_password: SecretStr | None = None

    @field_validator("hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        """Accept ``h1:26379,h2:26379`` (env vars) as well as a YAML list."""
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field(default="fluxfunc", pattern=r"^[A-Za-z0-9_.-]+$")
    sentinel: SentinelSettings | None = None
    max_connections: int = Field(default=64, ge=2)
    queue_max_len: int = Field(default=100_000, ge=1)


class StoreSettings(Section):
    url: str = "sqlite:///./fluxfunc.db"
    auto_migrate: bool = True
    pool_size: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _known_scheme(self) -> StoreSettings:
        if not self.url.startswith(("sqlite://", "mysql://", "mariadb://")):
            raise ValueError("store.url must start with sqlite://, mysql:// or mariadb://")
        return self


class ServerSettings(Section):
    host: str = Field(default="0.0.0.0", description=(
        "listen address; every interface by default (containers); `fluxfunc up` uses 127.0.0.1"))
    port: int = Field(default=8088, ge=0, le=65535)
    max_body_mb: float = Field(default=10, gt=0)
    max_json_depth: int = Field(default=64, ge=2, le=150, description=(
        "how deeply a caller's JSON (body, kwargs, options) may nest; deeper → 400 (at most "
        "150: the envelope around it must stay within what the worker's decoder reads)"))
    shutdown_seconds: float = Field(default=30, ge=0)
    keepalive_timeout: float = Field(default=15, gt=0, description=(
        "seconds a connection may stay idle: a new connection, or one between two requests, "
        "that has not delivered a whole request line and headers by then is closed"))
    body_timeout: float = Field(default=60, gt=0, description=(
        "seconds a client has, once its request headers arrived, to send the whole body"))
    trusted_proxies: list[str] = Field(default_factory=list, description=(
        "CIDRs of reverse proxies whose X-Forwarded-For is believed; from anyone else the "
        "header is ignored and the caller's IP is the peer address"))
    metrics_token: SecretStr | None = Field(default=None, description=(
        "when set, GET /metrics needs `Authorization: Bearer <metrics_token>`"))
    api_auth_func_timeout: float = Field(default=5, gt=0, le=60, description=(
        "seconds the Server waits for the auth func of a `func` API auth; later is a 401"))
    processes: int | None = Field(default=None, ge=1, le=256, description=(
        "server processes sharing the port (SO_REUSEPORT); unset: one per usable core "
        "(`fluxfunc up`: 1); `--processes N` overrides"))

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        """Accept ``10.0.0.0/8,172.16.0.0/12`` (env vars) as well as a YAML list."""
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ip_network(p, strict=False)) for p in value]
        except ValueError as exc:
            raise ValueError(f"not a CIDR: {exc}") from None

    @cached_property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``trusted_proxies`` parsed."""
        return tuple(ip_network(p) for p in self.trusted_proxies)


class WorkerSettings(Section):
    queues: list[str] = Field(default_factory=lambda: ["default", "cron", "async"], min_length=1)
    concurrency: int = Field(default=4, ge=1)
    lease_seconds: float = Field(default=60, gt=0)
    heartbeat_seconds: float | None = Field(default=None, gt=0)
    reclaim_seconds: float = Field(default=5, gt=0)
    drain_seconds: float = Field(default=30, ge=0)
    max_tasks_per_child: int = Field(default=1000, ge=1)
    async_per_child: int = Field(default=100, ge=1, description=(
        "``async def`` tasks one child runs at once on its event loop (sync tasks: one per "
        "child); docs/worker.md, Async functions"))
    max_memory_mb: int = Field(default=1024, ge=16)
    max_deliveries: int = Field(default=5, ge=1)
    record_batch_seconds: float = Field(default=0.5, gt=0)
    read_ahead: bool = Field(default=False, description=(
        "while the recent runs were all short (< 20 ms), read one extra entry per child so a "
        "freed child starts its next task without waiting for Redis; off = read only as many "
        "entries as there are free children"))
    fast_paths: bool = Field(default=True, description=(
        "use the hot-path tricks (Redis lane, zygote, hand-rolled task log line); false, or "
        "FLUXFUNC_PLAIN_VARIANTS=1, selects their plain variants (docs/internals.md)"))

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        """Accept ``a,b`` (env vars, ``--queues``) as well as a YAML list."""
        if isinstance(value, str):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

    @property
    def heartbeat_interval(self) -> float:
        """Lease renewal period: a quarter of the lease unless set."""
        return self.heartbeat_seconds or self.lease_seconds / 4


class BeatSettings(Section):
    timezone: str = "UTC"
    lease_seconds: float = Field(default=15, gt=0)
    store_outage_seconds: float = Field(default=300, ge=0, description=(
        "how long the Beat leader keeps firing while the store cannot take its fire claims "
        "(deduplicated in Redis; the claims are written when the store is back); 0 = never"))
    partitions: int = Field(default=16, ge=1, le=1024, description=(
        "how many partitions the cron jobs are cut into; each Beat replica leases a fair share "
        "of them and fires their jobs (the same value on every Beat of a deployment)"))
    max_lag_seconds: float = Field(default=2, gt=0, description=(
        "how far a Beat may fall behind its schedule (overload) before a job's older due fires "
        "follow its misfirePolicy instead of queueing up"))
    batch_fires: int = Field(default=5000, ge=100, le=100_000, description=(
        "fires prepared and sent per batch: bounds the Beat's memory whatever is due at once"))


class TasksSettings(Section):
    default_timeout: float = Field(default=30, gt=0)
    max_timeout: float = Field(default=3600, gt=0)
    result_ttl: int = Field(default=3600, ge=1)
    record_retention_days: int = Field(default=30, ge=1)
    record_limit: int = Field(default=1000, ge=1)


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "console", "auto"] = "auto"


class ResourcesSettings(Section):
    path: str = Field(default="./resources", description=(
        "the resource directory (uploads, DFF.RESP_FILE, DFF.RESP_LARGE_DATA); every Server "
        "and Worker must see it at this same path (a shared volume)"))
    max_upload_bytes: int = Field(default=1024 ** 3, ge=1, description=(
        "largest upload to POST /api/v1/resources (all files of one request together)"))
    upload_expires_seconds: int = Field(default=86400, ge=60, description=(
        "how long files posted to a function stay under .uploads/ before the janitor deletes them"))
    large_data_expires_seconds: int = Field(default=300, ge=60, description=(
        "how long a DFF.RESP_LARGE_DATA file may wait under .downloads/ to be fetched"))


class PackagesSettings(Section):
    """Extra Python packages installed by every worker (docs/packages.md)."""

    dir: str = Field(default="./.fluxfunc/packages", description=(
        "the worker's LOCAL folder of installed package sets, one sub-folder per set "
        "(content-addressed); not shared between machines"))
    index_url: str | None = Field(default=None, description=(
        "the package index pip installs from instead of PyPI (`--index-url`)"))
    offline: bool = Field(default=False, description=(
        "install only from wheels in `{resources.path}/packages/` (`--no-index`)"))
    install_timeout: float = Field(default=600, gt=0, description=(
        "seconds one install may take before it is stopped and reported as failed"))
    keep_unused_hours: float = Field(default=24, ge=0, description=(
        "package-set folders no worker on this machine used for this long are deleted"))


class AccountsSettings(Section):
    """Console users, sessions, the audit log and editing locks (docs/security.md)."""

    session_idle_minutes: float = Field(default=720, gt=0, description=(
        "a console session not used for this long ends (server-side expiry)"))
    session_max_hours: float = Field(default=168, gt=0, description=(
        "a console session ends this long after sign-in however much it is used"))
    audit_retention_days: int = Field(default=90, ge=1, description=(
        "audit log entries older than this are deleted by the Beat's janitor"))
    edit_lock_seconds: int = Field(default=60, ge=5, le=3600, description=(
        "how long a script's editing lock lasts unless renewed (the console renews it)"))
    sign_in_failures: int = Field(default=5, ge=1, description=(
        "failed sign-ins of one username or client address before sign-ins are refused "
        "for a while (doubling with each further failure, at most 15 minutes)"))


class ConsoleSettings(Section):
    """What the web console runs on the Server's behalf: draft runs (docs/http-api.md)."""

    draft_run_queue: str = Field(default="default", min_length=1, description=(
        "the queue draft runs (`POST /api/v1/scripts/{id}/draft-run`) go to; workers read "
        "`default` unless told otherwise"))
    draft_run_max_timeout: float = Field(default=60, gt=0, description=(
        "seconds a draft run may take at most (its `timeout`, and the draft function's own, "
        "are capped to this)"))
    draft_runs_per_user: int = Field(default=2, ge=1, description=(
        "draft runs one user (or token) may have running at once; more are a 429"))


class Settings(Section):
    """The whole configuration (docs/configuration.md lists every key)."""

    secret: SecretStr | None = None
    previous_secrets: list[SecretStr] = Field(default_factory=list, description=(
        "secrets used before `secret`: what they encrypted stays readable until "
        "`fluxfunc admin rotate-secret` re-encrypts it with `secret`"))
    redis: RedisSettings = RedisSettings()
    store: StoreSettings = StoreSettings()
    server: ServerSettings = ServerSettings()
    worker: WorkerSettings = WorkerSettings()
    beat: BeatSettings = BeatSettings()
    tasks: TasksSettings = TasksSettings()
    log: LogSettings = LogSettings()
    resources: ResourcesSettings = ResourcesSettings()
    packages: PackagesSettings = PackagesSettings()
    accounts: AccountsSettings = AccountsSettings()
    console: ConsoleSettings = ConsoleSettings()

    def require_secret(self) -> str:
        """The secret, or a ConfigError when it is missing (required outside ``fluxfunc up``),
        shorter than 32 bytes or the compose example's placeholder."""
        if self.secret is None or not self.secret.get_secret_value():
            raise ConfigError("secret is not set: add `secret:` to the config or FLUXFUNC_SECRET")
        check_secret(self.secret.get_secret_value())
        return self.secret.get_secret_value()

    def cipher_secrets(self) -> list[str]:
        """``secret`` (checked) then ``previous_secrets``: the keys a Cipher can decrypt with."""
        return [self.require_secret(), *(s.get_secret_value() for s in self.previous_secrets)]

    @field_validator("previous_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        """``FLUXFUNC_PREVIOUS_SECRETS=old1,old2`` as well as a YAML list."""
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def with_overrides(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some section keys replaced (used by CLI flags and tests)."""
        data = self.model_dump(mode="python")
        for name, values in sections.items():
            if isinstance(data.get(name), dict):
                data[name] = {**data[name], **values}
            else:
                data[name] = values
        return Settings.model_validate(_reveal(data))


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def resolve_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """``--config`` beats ``$FLUXFUNC_CONFIG`` beats ``./fluxfunc.yaml``; None means defaults."""
    if explicit:
        return Path(explicit)
    if environ.get("FLUXFUNC_CONFIG"):
        return Path(environ["FLUXFUNC_CONFIG"])
    local = Path(DEFAULT_FILE)
    return local if local.is_file() else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


_RAW_KEYS = frozenset({"secret", "previous_secrets", "password", "sentinel_password", "namespace", "url"})


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``FLUXFUNC_REDIS__URL=...`` → ``{"redis": {"url": ...}}``; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            value = raw
        if path[-1] in _RAW_KEYS:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return f"invalid config ({source}): " + "; ".join(parts)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load, merge and validate settings; raises ConfigError naming the bad key and file."""
    env = os.environ if environ is None else environ
    file = resolve_path(str(path) if path else None, env)
    data = _read_yaml(file) if file else {}
    overrides = _env_overrides(env)
    source = f"{file}" if file else "defaults"
    if overrides:
        source += " + FLUXFUNC_* environment"
    try:
        return Settings.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
