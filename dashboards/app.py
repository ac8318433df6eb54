"""The dashboards service (ASGI): GraphQL at /graphql (GraphiQL in a browser), /health, the web dashboard at /.

Every /graphql request needs `Authorization: Bearer <token>` (ANALYTICSPRO_API_TOKENS, compared in constant
time, never logged). Answers are cached whole in Redis for DASHBOARD_CACHE_TTL_SECONDS (60), keyed by the
normalized query document, its variables and the UTC day, when every field in it used a preset date range
(custom ranges, exports: never). Answers only about today's live numbers (hotMetrics, itself a Redis read) are
kept in the process for DASHBOARD_LIVE_CACHE_SECONDS (1) instead. `extensions.cache` and the X-Cache header say
hit, miss or bypass, and where. Answers only about closed days carry `Cache-Control: public, max-age=86400` for
a CDN in front.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from graphql import OperationDefinitionNode, OperationType, parse, print_ast
from graphql.error import GraphQLSyntaxError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL

from common.asgi import send_json_body
from common.dbt_vars import lookback_days
from common.redis_keys import dashboard_cache_prefix
from common.settings import utc_today
from dashboards.config import DashboardSettings, get_dashboard_settings
from dashboards.schema import CachePolicy, schema
from dashboards.warehouse import Warehouse

log = logging.getLogger("analyticspro.dashboards")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WEB = Path(__file__).resolve().parent / "web"
NODE_MODULES = WEB / "node_modules"
VENDOR = {  # what the page and GraphiQL load, from the npm packages bootstrap installs (no CDN)
    "echarts.min.js": "echarts/dist/echarts.min.js",
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "graphiql.min.css": "graphiql/graphiql.min.css",
}
MAX_BODY_BYTES = 1_000_000
CACHE_VERSION = "v1"
POLICY_KEY = "analyticspro.policy"
LIVE_CACHE_ENTRIES = 256


@functools.lru_cache(maxsize=2048)
def normalize(query: str) -> tuple[str, bool] | None:
    """(the document printed canonically, has a mutation), or None when it does not parse."""
    try:
        document = parse(query)
    except GraphQLSyntaxError:
        return None
    mutation = any(
        isinstance(node, OperationDefinitionNode) and node.operation != OperationType.QUERY
        for node in document.definitions
    )
    return print_ast(document), mutation


def token_ok(header: bytes | None, tokens: tuple[str, ...]) -> bool:
    """Constant-time check of an `Authorization: Bearer <token>` header against every configured token."""
    if not header or header[:7].lower() != b"bearer ":
        return False
    offered = hashlib.sha256(header[7:].strip()).digest()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(offered, hashlib.sha256(token.encode()).digest())
    return matched


class StrawberryApp(GraphQL):
    def __init__(self, warehouse: Warehouse, settings: DashboardSettings) -> None:
        super().__init__(schema, graphql_ide=None, allow_queries_via_get=True)
        self.warehouse = warehouse
        self.settings = settings

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return {
            "request": request,
            "response": response,
            "warehouse": self.warehouse,
            "settings": self.settings,
            "policy": request.scope[POLICY_KEY],
        }


async def _send_json(send: Send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send_json_body(send, status, orjson.dumps(payload), headers)


class GraphQLEndpoint:
    """Auth and the Redis answer cache around strawberry."""

    def __init__(self, warehouse: Warehouse, settings: DashboardSettings) -> None:
        self.warehouse = warehouse
        self.settings = settings
        self.strawberry = StrawberryApp(warehouse, settings)
        self.lookback_days = lookback_days()
        self.prefix = dashboard_cache_prefix(settings.base.redis_key_prefix, CACHE_VERSION)
        self.live: dict[str, tuple[float, bytes]] = {}

    def cache_key(self, normalized: str, variables: Any, operation: Any) -> str:
        material = json.dumps([normalized, variables, operation, utc_today().isoformat()], sort_keys=True)
        return f"{self.prefix}:{hashlib.sha256(material.encode()).hexdigest()}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        headers = dict(scope["headers"])
        if method == "GET" and not scope.get("query_string") and b"text/html" in headers.get(b"accept", b""):
            await HTMLResponse((WEB / "graphiql.html").read_text())(scope, receive, send)
            return
        if not token_ok(headers.get(b"authorization"), self.settings.api_tokens):
            await _send_json(
                send,
                401,
                {
                    "errors": [
                        {
                            "message": "missing or wrong API token: send `Authorization: Bearer <token>` "
                            "(a token from ANALYTICSPRO_API_TOKENS)"
                        }
                    ]
                },  # fmt: skip
                [(b"www-authenticate", b'Bearer realm="analyticspro"')],
            )
            return
        body = b""
        if method == "POST":
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_BODY_BYTES:
                    await _send_json(
                        send, 413, {"errors": [{"message": f"request body over {MAX_BODY_BYTES:,} bytes"}]}
                    )
                    return
        request = self._request_parts(method, scope, body, headers)
        key = None
        if request is not None:
            normalized = normalize(request[0]) if isinstance(request[0], str) else None
            if normalized is not None and not normalized[1]:
                key = self.cache_key(normalized[0], request[1], request[2])
                local = self.live.get(key)
                if local is not None and local[0] > time.monotonic():
                    await self._send_hit(send, local[1], store=b"process")
                    return
                stored = await self.warehouse.redis_call("get", key)
                if stored is not None:
                    await self._send_hit(send, stored, store=b"redis")
                    return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        policy = CachePolicy(self.lookback_days)
        scope[POLICY_KEY] = policy
        captured: dict[str, Any] = {"body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = message
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        await self.strawberry(scope, replay, capture)
        await self._send_answer(send, captured, policy, key)

    def _keep_live(self, key: str, stored: bytes) -> None:
        """Live answers (today's hot metrics) stay in this process for DASHBOARD_LIVE_CACHE_SECONDS."""
        now = time.monotonic()
        if len(self.live) >= LIVE_CACHE_ENTRIES:
            for old in [k for k, (expires, _) in self.live.items() if expires <= now] or list(self.live)[:1]:
                self.live.pop(old, None)
        self.live[key] = (now + self.settings.live_cache_seconds, stored)

    @staticmethod
    def _request_parts(method: str, scope: Scope, body: bytes, headers: dict) -> tuple[Any, Any, Any] | None:
        try:
            if method == "GET":
                params = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
                variables = json.loads(params["variables"]) if params.get("variables") else None
                return params.get("query"), variables, params.get("operationName")
            if b"application/json" not in headers.get(b"content-type", b""):
                return None
            payload = orjson.loads(body)
            if not isinstance(payload, dict):
                return None
            return payload.get("query"), payload.get("variables"), payload.get("operationName")
        except (ValueError, UnicodeDecodeError, KeyError):
            return None

    async def _send_hit(self, send: Send, stored: bytes, store: bytes) -> None:
        cache_control, stored_at, data = stored.split(b"\n", 2)
        age = max(0, int(time.time() - float(stored_at)))
        body = (
            b'{"data":' + data + b',"extensions":{"cache":{"status":"hit","store":"' + store + b'","age":'
            + str(age).encode() + b"}}}"
        )  # fmt: skip
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", cache_control),
                    (b"x-cache", b"HIT"),
                    (b"age", str(age).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _send_answer(self, send: Send, captured: dict, policy: CachePolicy, key: str | None) -> None:
        start = captured.get("start") or {"status": 500, "headers": []}
        status = start["status"]
        body = captured["body"]
        headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"cache-control")]
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict):
            ok = status == 200 and not payload.get("errors") and payload.get("data") is not None
            cacheable = ok and key is not None and policy.fields > 0
            cache: dict[str, Any] = {"status": "bypass"}
            if cacheable and (policy.cacheable or policy.live):
                stored = b"\n".join(
                    [policy.cache_control.encode(), f"{time.time():.3f}".encode(), orjson.dumps(payload["data"])]
                )
                if policy.live and self.settings.live_cache_seconds > 0:
                    self._keep_live(key, stored)
                    cache = {"status": "miss", "store": "process", "ttl": self.settings.live_cache_seconds}
                elif policy.cacheable and self.warehouse.redis_available:
                    ttl = self.settings.cache_ttl_seconds
                    if await self.warehouse.redis_call("set", key, stored, ex=ttl) is not None:
                        cache = {"status": "miss", "store": "redis", "ttl": ttl}
            cache_status = cache["status"]
            extensions = payload.setdefault("extensions", {})
            extensions["cache"] = cache
            body = orjson.dumps(payload)
            cache_control = policy.cache_control if ok else "no-store"
            headers += [(b"cache-control", cache_control.encode()), (b"x-cache", cache_status.upper().encode())]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def vendor_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in VENDOR:
        return JSONResponse({"error": f"no such file {name!r}"}, status_code=404)
    path = NODE_MODULES / VENDOR[name]
    if not path.exists():
        return JSONResponse(
            {"error": f"{path} is missing: run `make install` (scripts/bootstrap.sh runs npm ci in dashboards/web)"},
            status_code=503,
        )
    return FileResponse(path, headers={"cache-control": "public, max-age=86400"})


def create_app(settings: DashboardSettings) -> Starlette:
    warehouse = Warehouse(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202
        await warehouse.open()
        app.state.warehouse = warehouse
        warehouse.questions.warm_up()  # load the insights engine in the background: the first question is fast
        # everything imported so far lives as long as the process: keep it out of the cyclic collector's full
        # passes, whose pauses were the latency tail under load
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await warehouse.close()

    async def health(request: Request) -> JSONResponse:
        answer = await warehouse.health()
        return JSONResponse(answer, status_code=200 if answer["postgres"] else 503)

    async def index(request: Request) -> Response:
        return FileResponse(WEB / "index.html", headers={"cache-control": "no-cache"})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/health", health),
            Route("/graphql", GraphQLEndpoint(warehouse, settings), methods=["GET", "POST"]),
            Route("/vendor/{name}", vendor_file),
            Mount("/static", StaticFiles(directory=WEB / "static"), name="static"),
        ],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """The app from the environment (uvicorn's factory; each worker process builds its own)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return create_app(get_dashboard_settings())
