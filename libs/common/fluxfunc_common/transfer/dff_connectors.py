"""DataFlux Func's connectors (its database, export file and 1.x package rows) → fluxfunc
connector rows.

A DataFlux Func connector row is ``{id, title, description, type, configJSON, isBuiltin}``; its
database keeps ``password``, ``secretKey`` and ``guanceAPIKey`` encrypted as ``<field>Cipher``
with its ``SECRET`` salted with the connector's id (:mod:`.dff_cipher`; a DataWay ``token`` is
kept in clear), its export empties each of them (``passwordCipher: ""``, …) and keeps the
ones in clear (a DataWay ``token``) as they are. The row moves with
its id; a type fluxfunc has under another name is renamed (``df_datakit`` → ``datakit``,
``df_dataway`` → ``dataway``), a type it does not have is reported and left out. A secret read
in clear (:func:`plain_secrets`, from the database with ``--dff-secret``; from an export file
or package only those DataFlux Func left in clear, :func:`add_from_export`) travels as the
bundle's secret of the connector, sealed when written; any other one is masked (``"******"``),
so the import plan names it as one to set and the connector is written untested
(:mod:`.connectors`). Subscriptions (``topicHandlers``) arrive DISABLED, as cron jobs do, so no
message is handled by both systems; a connector already here keeps its config (the
subscriptions enabled here stay enabled).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fluxfunc_common.connectors.types import MASK, SECRET_FIELDS, ConnectorType
from fluxfunc_common.crypto import CIPHER_SUFFIX
from fluxfunc_common.transfer import dff_cipher
from fluxfunc_common.transfer.bundle import CONNECTOR, Bundle, Row, secret_key

RENAMED = {"df_datakit": ConnectorType.DATAKIT.value, "df_dataway": ConnectorType.DATAWAY.value}
KNOWN = frozenset(t.value for t in ConnectorType)


def _config(value: object) -> dict[str, object]:
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def _masked(config: Mapping[str, object], plain: Mapping[str, str]) -> dict[str, object]:
    """Secrets masked (those read in clear, ``plain``, or still there as plain text or a
    cipher, emptied or not); other ``*Cipher`` fields dropped. A secret known to be empty is
    no secret."""
    out = {k: v for k, v in config.items() if not k.endswith(CIPHER_SUFFIX) and k not in SECRET_FIELDS}
    for name in SECRET_FIELDS:
        there = bool(plain[name]) if name in plain else \
            name + CIPHER_SUFFIX in config or bool(config.get(name))
        if there:
            out[name] = MASK
    return out


def plain_secrets(row: Mapping[str, object], dff_secret: str | None) -> dict[str, str]:
    """The secrets of a connector row of DataFlux Func's database that can be read: those in
    clear (a DataWay ``token``) and, with its ``SECRET``, the ``*Cipher`` ones (salted with
    the connector's id). BadRequest when a cipher does not open with ``dff_secret``."""
    config, salt = _config(row.get("configJSON", row.get("config"))), str(row["id"])
    out: dict[str, str] = {}
    for name in SECRET_FIELDS:
        cipher, value = config.get(name + CIPHER_SUFFIX), config.get(name)
        if isinstance(cipher, str) and cipher and dff_secret is not None:
            out[name] = dff_cipher.decrypt(cipher, dff_secret, salt)
        elif isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            out[name] = str(value)
        elif cipher == "":
            out[name] = ""  # emptied by DataFlux Func: known empty
    return out


def _disabled_handlers(config: dict[str, object]) -> int:
    handlers = config.get("topicHandlers")
    if not isinstance(handlers, list):
        return 0
    disabled = [{**h, "isDisabled": True} for h in handlers if isinstance(h, Mapping)]
    config["topicHandlers"] = disabled
    return len(disabled)


def add(row: Mapping[str, object], bundle: Bundle, plain: Mapping[str, str] | None = None) -> None:
    """Add the connector of a DataFlux Func row to ``bundle`` (or a note why not), with the
    secrets read in clear (``plain``, :func:`plain_secrets`) as its bundle secret."""
    connector_id, kind = str(row["id"]), str(row.get("type") or "")
    kind = RENAMED.get(kind, kind)
    if kind not in KNOWN:
        bundle.notes.append(f"skipped connector {connector_id}: type {row.get('type')!r} is not "
                            "one fluxfunc has (docs/connectors.md)")
        return
    source = _config(row.get("configJSON", row.get("config")))
    plain = dict(plain or {})
    config = _masked(source, plain)
    out: Row = {"id": connector_id, "type": kind, "title": row.get("title"),
                "description": row.get("description"), "config": config, "isDisabled": False}
    told = {k: v for k, v in sorted(plain.items()) if v}
    if told:
        bundle.secrets[secret_key(CONNECTOR, connector_id)] = json.dumps(told, sort_keys=True)
    if row.get("isBuiltin") in (1, True, "1"):
        bundle.notes.append(f"changed connector {connector_id}: built into DataFlux Func (from "
                            "its config), moved as an ordinary connector")
    handlers = _disabled_handlers(config)
    if handlers:
        bundle.notes.append(f"changed connector {connector_id}: its {handlers} subscription(s) "
                            "created DISABLED; stop them in DataFlux Func, then enable them here")
        bundle.keep[secret_key(CONNECTOR, connector_id)] = ("config",)
    bundle.add(CONNECTOR, out)


def add_from_export(row: Mapping[str, object], bundle: Bundle) -> None:
    """Add the connector of a row of DataFlux Func's export file or 1.x package: the secrets
    it left in clear travel; an emptied ``*Cipher`` (the export empties every one: the secret
    was not exported, it is not known empty) or one still encrypted (no ``SECRET`` here) is
    masked, so the import plan names it as one to set."""
    plain = {name: value for name, value in plain_secrets(row, None).items() if value}
    add(row, bundle, plain)


def add_from_database(row: Mapping[str, object], bundle: Bundle, dff_secret: str | None) -> None:
    """Add the connector of a row of DataFlux Func's ``biz_main_connector``: its secrets
    decrypted with ``dff_secret``; without it they stay unset and a note says so."""
    if RENAMED.get(str(row.get("type")), str(row.get("type"))) not in KNOWN:
        add(row, bundle)  # skipped, with a note: its secrets are not even opened
        return
    plain = plain_secrets(row, dff_secret)
    config = _config(row.get("configJSON", row.get("config")))
    sealed = [n for n in SECRET_FIELDS if config.get(n + CIPHER_SUFFIX) and n not in plain]
    if sealed:
        bundle.notes.append(f"changed connector {row['id']}: moved without its "
                            f"{', '.join(sealed)} (encrypted with DataFlux Func's SECRET: give "
                            "--dff-secret, or set it here), written untested")
    add(row, bundle, plain)
