"""The connector types, the config model (DataFlux Func's field names) and the stored row."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# config fields holding a secret: stored as ``<field>Cipher``, never answered (DataFlux Func's
# CIPHER_CONFIG_FIELDS plus ``token``)
SECRET_FIELDS = ("password", "secretKey", "token", "guanceAPIKey")
MASK = "******"


class ConnectorType(StrEnum):
    """What a connector connects to (DataFlux Func's type names)."""

    MYSQL = "mysql"
    POSTGRESQL = "postgresql"
    REDIS = "redis"
    MQTT = "mqtt"
    AMQP = "amqp"
    NATS = "nats"
    MEMCACHED = "memcached"
    INFLUXDB = "influxdb"
    DATAKIT = "datakit"
    DATAWAY = "dataway"


class ConnectorConfig(BaseModel):
    """A connector's ``config`` with DataFlux Func's field names. Fields a type does not use
    are ignored by it; unknown fields are kept as they are (DataFlux Func has more types).
    ``topicHandlers`` are the subscriptions the Beat runs (docs/connectors.md)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    servers: str | list[str] | None = None  # memcached / nats: "h:p,h:p" or a list
    user: str | None = None
    username: str | None = None  # an alias of ``user`` some DataFlux Func types use
    password: str | None = None
    secret_key: str | None = Field(default=None, alias="secretKey")
    token: str | None = None
    database: str | int | None = None  # SQL: the database; redis: the db number
    db: int | None = None
    charset: str | None = None
    schema_: str | None = Field(default=None, alias="schema")  # postgresql: the search_path
    use_ssl: bool | None = Field(default=None, alias="useSSL")
    client_id: str | None = Field(default=None, alias="clientId")
    keepalive: int | None = None
    vhost: str | None = None  # amqp: the virtual host ("/" unless given)
    topic_handlers: list[dict[str, object]] | None = Field(default=None, alias="topicHandlers")
    timeout: float | None = Field(default=None, gt=0, le=300)  # connect timeout, seconds
    # the HTTP types (influxdb, datakit, dataway): a whole base URL, or protocol + host + port
    url: str | None = None
    protocol: str | None = None  # "http" or "https"
    source: str | None = None  # datakit: the ``input`` name of written data

    def login(self) -> str | None:
        """``user`` or its alias ``username``."""
        return self.user or self.username

    def server_list(self, default: str) -> list[str]:
        """``servers`` (or ``host:port``) as ``host:port`` strings."""
        if self.servers:
            items = self.servers.split(",") if isinstance(self.servers, str) else self.servers
            return [s.strip() for s in items if s.strip()]
        if self.host or self.port:  # a port without a host is the default host's
            host = self.host or default.rpartition(":")[0]
            return [f"{host}:{self.port}" if self.port else host]
        return [default]

    def connect_timeout(self) -> float:
        return self.timeout or 5.0


class StoredConnector(BaseModel):
    """A connector as the store keeps it: ``config`` holds ciphertext (``passwordCipher`` …)
    instead of secrets (:mod:`fluxfunc_common.connectors.sealing`)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    type: ConnectorType
    title: str | None = None
    description: str | None = None
    config: dict[str, object] = Field(default_factory=dict)
    is_disabled: bool = Field(default=False, alias="isDisabled")
    create_time: float = Field(default=0.0, alias="createTime")
    update_time: float = Field(default=0.0, alias="updateTime")

    def as_json(self) -> dict[str, object]:
        """The camelCase JSON form."""
        return self.model_dump(by_alias=True, mode="json")
