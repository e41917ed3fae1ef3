"""Every ``web.AppKey`` of the Server application, in one place: what ``app.py`` stores at
startup and handlers read as ``request.app[KEY]``."""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_server.access import Rule
from fluxfunc_server.bodies import BodyLimits
from fluxfunc_server.caller import Caller
from fluxfunc_server.catalog import Catalog
from fluxfunc_server.context import AppContext

SETTINGS = web.AppKey("fluxfunc_settings", Settings)
REDIS = web.AppKey("fluxfunc_redis", RedisClients)
CTX = web.AppKey("fluxfunc_ctx", AppContext)
CATALOG = web.AppKey("fluxfunc_catalog", Catalog)
CALLER = web.AppKey("fluxfunc_caller", Caller)
# the body limits of a function call (this Server's, file parts stored): built once
CALL_LIMITS = web.AppKey("fluxfunc_call_limits", BodyLimits)
# the declared access of every route (filled by routing.add_route, read by its middleware)
ACCESS: web.AppKey[dict[AbstractRoute, Rule]] = web.AppKey("fluxfunc_access", dict)
# the OpenAPI document, built once when the routes are added
OPENAPI: web.AppKey[bytes] = web.AppKey("fluxfunc_openapi", bytes)
