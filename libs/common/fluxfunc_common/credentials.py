"""API credentials and the secrets stored under ``settings.secret``: issuing (with a role),
listing and revoking bearer tokens and access keys, and re-encrypting everything after a secret rotation.

Shared by ``fluxfunc admin …`` and the Server's ``/api/v1/admin/…`` routes. What is
encrypted: the secret of every access key, and every ``*Cipher`` field of the stored
entities (password env variables' ``valueCipher``; API auth's httpBasic ``passwordCipher``
and fixedField ``valueCipher``). A rotation also encrypts API-auth secrets found in clear.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from fluxfunc_common import ids
from fluxfunc_common.crypto import Cipher, hash_token, new_token, reseal_fields
from fluxfunc_common.store import (
    ConnectorStore,
    Credential,
    CredentialKind,
    CredentialStore,
    Entity,
    EntityStore,
)

SEALED_ENTITIES = (Entity.ENV_VARIABLE, Entity.SYNC_API, Entity.ASYNC_API)
_PAGE = 200


async def list_credentials(store: CredentialStore, kind: CredentialKind) -> list[Credential]:
    """Admin tokens (revoked ones flagged) or access keys, oldest first; never a secret."""
    return await store.list_credentials(kind)


async def issue_token(store: CredentialStore, name: str = "",
                      role: str = "admin") -> tuple[str, str]:
    """Store a new bearer token's hash with ``role``; return (token id, token)."""
    token = new_token()
    token_id = ids.entity_id("tok")
    await store.add_admin_token(token_id, hash_token(token), name or token_id, role)
    return token_id, token


async def issue_access_key(store: CredentialStore, cipher: Cipher, name: str = "",
                           role: str = "admin") -> tuple[str, str]:
    """Store a new access key (secret encrypted) with ``role``; return (id, secret)."""
    ak_id = ids.entity_id("ak")
    secret = secrets.token_urlsafe(24)
    await store.add_access_key(ak_id, cipher.encrypt(secret), name or ak_id, role)
    return ak_id, secret


async def revoke(store: CredentialStore, kind: CredentialKind, credential_id: str) -> None:
    """Revoke a token (kept, flagged) or delete an access key; NotFound if there is none.

    Servers cache a valid token for at most ``adminauth.TOKEN_CACHE_SECONDS`` (under 1 s) and
    read access keys from the store on every request, so this is effective everywhere within
    a second."""
    if kind is CredentialKind.TOKEN:
        await store.revoke_admin_token(credential_id)
    else:
        await store.revoke_access_key(credential_id)


class SecretStore(CredentialStore, EntityStore, ConnectorStore, Protocol):
    """Where the secrets live: access keys, the sealed fields of entities and connectors."""


@dataclass
class RotationReport:
    """How many stored values ``rotate_secret`` re-encrypted."""

    access_keys: int = 0
    entities: int = 0


_PLAIN_AUTH_FIELDS = {"fixedField": "value", "httpBasic": "password"}


def seal_api_auth(api_auth: Any, cipher: Cipher) -> Any:
    """An entry's ``apiAuth`` with any secret still stored in clear (a fixedField ``value`` or
    an httpBasic ``password`` written by an earlier version or an import) encrypted."""
    if not isinstance(api_auth, dict) or api_auth.get("type") not in _PLAIN_AUTH_FIELDS:
        return api_auth
    plain = _PLAIN_AUTH_FIELDS[api_auth["type"]]

    def seal(rule: Any) -> Any:
        if not isinstance(rule, dict) or rule.get(plain) is None:
            return rule
        sealed = {k: v for k, v in rule.items() if k != plain}
        return {**sealed, plain + "Cipher": cipher.encrypt(str(rule[plain]))}

    out = seal(api_auth)
    for many in ("fields", "users"):
        if isinstance(out.get(many), list):
            out = {**out, many: [seal(r) for r in out[many]]}
    return out


async def rotate_secret(store: SecretStore, cipher: Cipher) -> RotationReport:
    """Re-encrypt every stored secret with ``cipher``'s current secret and format, and
    encrypt the API-auth secrets still stored in clear.

    ``cipher`` must also open what the old secrets encrypted (``previous_secrets``); a value
    it cannot open stops the run with ConfigError before that value is changed. Values
    already done are simply re-encrypted again, so the run can be repeated."""
    report = RotationReport()
    for key in await store.list_credentials(CredentialKind.ACCESS_KEY):
        sealed = await store.access_key_secret(key.id)
        if sealed is not None:
            await store.set_access_key_secret(key.id, cipher.reseal(sealed))
            report.access_keys += 1
    for entity in SEALED_ENTITIES:
        cursor: str | None = None
        while True:
            page = await store.list(entity, limit=_PAGE, cursor=cursor)
            for item in page.items:
                resealed = reseal_fields(item, cipher)
                if "apiAuth" in resealed:
                    resealed["apiAuth"] = seal_api_auth(resealed["apiAuth"], cipher)
                changes = {k: v for k, v in resealed.items() if v != item.get(k)}
                if changes:
                    await store.update(entity, str(item["id"]), changes)
                    report.entities += 1
            cursor = page.next_cursor
            if not cursor:
                break
    for connector in await store.list_connectors():  # passwordCipher … of connector configs
        config = reseal_fields(connector.config, cipher)
        if config != connector.config:
            await store.replace_connector(connector.model_copy(update={"config": config}))
            report.entities += 1
    return report
