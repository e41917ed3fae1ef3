"""Helpers of the accounts tests: users made in the store, a signed-in console client."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from tests.server.conftest import Api

from fluxfunc_common import accounts
from fluxfunc_common.credentials import issue_token
from fluxfunc_common.roles import Role

PASSWORD = "correct horse battery"


async def make_user(api: Api, username: str, role: Role = Role.DEVELOPER,
                    password: str = PASSWORD) -> None:
    await accounts.add_user(api.ctx.store, username, role, password)


async def role_token(api: Api, role: Role) -> dict[str, str]:
    """Authorization headers of a new token with ``role``."""
    _, token = await issue_token(api.ctx.store, f"{role.value} token", role.value)
    return {"Authorization": f"Bearer {token}"}


def origin(client: TestClient) -> dict[str, str]:
    """The Origin header a browser on the Server's own page sends."""
    return {"Origin": str(client.make_url("/")).rstrip("/")}


async def sign_in(client: TestClient, username: str, password: str = PASSWORD,
                  expect: int = 200) -> dict[str, Any]:
    resp = await client.post("/api/v1/auth/sign-in", json={"username": username, "password": password},
                             headers=origin(client))
    body: dict[str, Any] = await resp.json()
    assert resp.status == expect, body
    return body
