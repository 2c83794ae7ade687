"""The router service: an OpenAI-compatible proxy that picks the model of each request.

``POST /v1/completions`` and ``POST /v1/chat/completions``: the body is read and its text
taken (``prompt``: a string or a list of strings; ``messages``: every message's ``content``,
a string or a list of ``{"type": "text", "text": ...}`` parts). When the request's tier
(header ``x-tier``, the configuration's ``headers.tier``) routes and the body's ``model``
asks for routing (absent, the reference's served name, or one of the tier's aliases), the
tier's router decides (:meth:`~llmfleet.routing.models.serving.TierRouter.decide`, for the
tenant of ``x-tenant-id``): the body's ``model`` is rewritten to the chosen served name.
Every forwarded request carries ``x-ai-eg-model: <model>`` (Envoy AI Gateway's header,
which the HTTPRoutes match), routed or not. Then the request goes to ``--upstream`` with its
path, query and other headers; the response (status, headers, body, streamed or not) comes
back unchanged, plus ``x-llmfleet-model`` and ``x-llmfleet-route`` (``routed``,
``reference``, ``only-reference``, ``unrouted``, ``no-text``) saying what was decided.

Errors are never silent: a body that is not a JSON object, a ``model`` that is not a
string, a missing ``model`` where nothing routes, malformed ``prompt``/``messages``: 400
with an OpenAI-style ``{"error": {"message", "type", "param"}}`` naming the field. An
upstream that cannot be reached: 502; one that times out: 504. An upstream error status is
passed back as it is. A prompt of token ids (no text) goes to the reference model.

``POST /route`` answers the decision only (``{"tier", "model", "candidate", "reason"}``);
``GET /healthz``: 200 with the configuration's digest, 503 before a configuration loaded.
Other paths are forwarded unchanged. The configuration file is polled every
``reload_seconds`` (:class:`~llmfleet.gateway.config.ConfigHolder`: a bad file is logged
and the last good configuration stays).

Demand metrics (:mod:`llmfleet.gateway.genai`, Envoy AI Gateway's ``gen_ai_*`` series):
every completion forwarded upstream (or failing there) is recorded, its tokens from the
answer's ``usage``; served as Prometheus text on ``GET /metrics`` of a port of their own
(``metrics_port``; the proxy's own port forwards ``/metrics`` like any other path).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from llmfleet.gateway.config import ConfigHolder, Loaded
from llmfleet.gateway.genai import GenAIMetrics, Observation, RequestLabels, StreamObserver

ROUTED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
DECISION_HEADER = "x-llmfleet-route"
CHOSEN_HEADER = "x-llmfleet-model"
#: RFC 9110 hop-by-hop headers, and those aiohttp recomputes for the new body.
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip


@dataclass(frozen=True)
class ProxySettings:
    """Where to forward, and the limits of one request."""

    upstream: str
    """Base URL of the gateway or model server, e.g. ``http://envoy-ai-gateway:80``."""
    connect_seconds: float = 5.0
    """Timeout to connect to the upstream."""
    read_seconds: float = 600.0
    """Longest wait for the next bytes of the upstream's answer (a long stream is fine as
    long as tokens keep coming)."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted (413 beyond)."""
    reload_seconds: float = 2.0
    """How often the configuration file is checked for changes."""


class BadRequest(Exception):
    """A request body the router cannot use; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _error(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.json_response(body, status=status)


def _parts_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise BadRequest(f"{where}[{j}] must be an object", f"{where}[{j}]")
            if part.get("type") == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest(f"{where}[{j}].text must be a string", f"{where}[{j}].text")
                texts.append(text)
        return "\n".join(texts)
    raise BadRequest(f"{where} must be a string or a list of content parts", where)


def request_text(path: str, body: dict[str, Any]) -> str | None:
    """The text the router reads from a request body (None: token ids, no text)."""
    if path == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list of messages", "messages")
        texts = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise BadRequest(f"messages[{i}] must be an object", f"messages[{i}]")
            texts.append(_parts_text(m.get("content"), f"messages[{i}].content"))
        return "\n".join(t for t in texts if t)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    if isinstance(prompt, list) and all(
        isinstance(p, int) or (isinstance(p, list) and all(isinstance(t, int) for t in p))
        for p in prompt
    ):
        return None
    raise BadRequest("prompt must be a string, a list of strings, or token ids", "prompt")


@dataclass(frozen=True)
class Routed:
    """What the router made of a request: the model to send and why."""

    model: str
    reason: str
    tier: str | None
    candidate: str | None


def decide(loaded: Loaded | None, path: str, body: dict[str, Any], tier: str | None,
           tenant: str | None) -> Routed:  # fmt: skip
    """The model of one request (module docstring); raises :class:`BadRequest`."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("model must be a string", "model")
    router = loaded.config.tiers.get(tier) if loaded and tier else None
    if loaded is None or router is None or not router.routes(model):
        request_text(path, body)  # the body is checked either way
        if model is None:
            hint = f" (tier {tier!r} does not route)" if tier else " (no tier header)"
            raise BadRequest(f"model is required{hint}", "model")
        return Routed(model, "unrouted", tier, None)
    text = request_text(path, body)
    if text is None:
        ref = router.candidates[router.reference]
        return Routed(ref.served_name, "no-text", tier, ref.model)
    d = router.decide(text, loaded.featuriser(router), tenant)
    return Routed(d.candidate.served_name, d.reason, tier, d.candidate.model)


class RouterService:
    """The aiohttp application and its state (configuration, upstream session)."""

    def __init__(self, settings: ProxySettings, holder: ConfigHolder, logger: logging.Logger,
                 metrics: GenAIMetrics | None = None):  # fmt: skip
        self.settings = settings
        self.holder = holder
        self.logger = logger
        self.metrics = metrics if metrics is not None else GenAIMetrics()
        self._session: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/route", self._route)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    def metrics_app(self) -> web.Application:
        """``GET /metrics``: the gen_ai series (for a port of their own)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self.holder.reload()
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.settings.connect_seconds,
            sock_read=self.settings.read_seconds,
        )  # fmt: skip
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        self._watcher = asyncio.create_task(self._watch())
        yield
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        await self._session.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            self.holder.reload()

    @property
    def config(self) -> Loaded | None:
        return self.holder.current

    async def _healthz(self, request: web.Request) -> web.Response:
        loaded = self.config
        if loaded is None:
            return web.json_response(
                {"status": "no configuration", "error": self.holder.last_error}, status=503
            )
        return web.json_response(
            {"status": "ok", "config": loaded.digest, "tiers": sorted(loaded.config.tiers),
             "lastError": self.holder.last_error}
        )  # fmt: skip

    async def _json_body(self, request: web.Request) -> tuple[bytes, dict[str, Any]]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest(f"the body is not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
        return raw, body

    def _headers(self, request: web.Request) -> tuple[str | None, str | None]:
        loaded = self.config
        tier_h = loaded.config.tier_header if loaded else "x-tier"
        tenant_h = loaded.config.tenant_header if loaded else "x-tenant-id"
        return request.headers.get(tier_h), request.headers.get(tenant_h)

    async def _route(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._json_body(request)
            path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
            routed = decide(self.config, path, body, *self._headers(request))
        except BadRequest as err:
            return _error(400, str(err), "invalid_request_error", err.param)
        return web.json_response(
            {"tier": routed.tier, "model": routed.model, "candidate": routed.candidate,
             "reason": routed.reason}
        )  # fmt: skip

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        data: bytes | None = None
        extra: dict[str, str] = {}
        labels: RequestLabels | None = None
        if request.method == "POST" and request.path in ROUTED_PATHS:
            try:
                _, body = await self._json_body(request)
                routed = decide(self.config, request.path, body, *self._headers(request))
            except BadRequest as err:
                return _error(400, str(err), "invalid_request_error", err.param)
            except web.HTTPRequestEntityTooLarge:
                return _error(413, "the body is too large", "invalid_request_error")
            original = body.get("model")
            labels = self.metrics.labels_of(
                request.path, original if isinstance(original, str) else None, routed.model,
                request.headers,
            )  # fmt: skip
            body["model"] = routed.model
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            model_h = self.config.config.model_header if self.config else "x-ai-eg-model"
            extra = {model_h: routed.model}
            self.logger.debug("tier %s -> %s (%s)", routed.tier, routed.model, routed.reason)
            reply = {CHOSEN_HEADER: routed.model, DECISION_HEADER: routed.reason}
        else:
            data = await request.read()
            reply = {}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers.update(extra)
        if data and request.path in ROUTED_PATHS:
            headers["Content-Type"] = "application/json"
        url = self.settings.upstream.rstrip("/") + request.path_qs
        if self._session is None:
            return _error(503, "the router is starting", "server_error")
        out: web.StreamResponse | None = None
        seen: StreamObserver | None = None
        ok = False
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            ) as upstream:
                out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for k, v in upstream.headers.items():
                    if k.lower() not in _HOP:
                        out.headers.add(k, v)
                if upstream.content_length is not None:
                    out.content_length = upstream.content_length
                out.headers.update(reply)
                if labels is not None:
                    seen = StreamObserver(
                        upstream.headers.get("Content-Type", "").startswith("text/event-stream")
                    )
                await out.prepare(request)
                async for chunk in upstream.content.iter_any():
                    if seen is not None:
                        seen.feed(chunk, time.monotonic() - start)
                    await out.write(chunk)
                await out.write_eof()
                ok = upstream.status < 400
                return out
        except (TimeoutError, aiohttp.ClientError) as err:
            if out is not None and out.prepared:
                # the status is sent: cut the connection so the client sees a broken stream
                self.logger.warning("upstream %s broke off mid-answer: %r", url, err)
                raise
            return self._upstream_error(url, err)
        finally:
            if labels is not None:
                elapsed = time.monotonic() - start
                self.metrics.record(
                    labels,
                    seen.finish(elapsed, ok) if seen is not None
                    else Observation(None, None, None, elapsed, None, success=False),
                )  # fmt: skip

    def _upstream_error(self, url: str, err: BaseException) -> web.Response:
        if isinstance(err, TimeoutError):
            self.logger.warning("upstream %s timed out", url)
            return _error(504, f"the upstream {self.settings.upstream} timed out", "upstream_error")
        self.logger.warning("upstream %s failed: %s", url, err)
        return _error(502, f"the upstream {self.settings.upstream} failed: {err}",
                          "upstream_error")  # fmt: skip


async def _serve(service: RouterService, host: str, port: int, metrics_port: int | None) -> None:
    runners = [web.AppRunner(service.app(), access_log=None)]
    if metrics_port is not None:
        runners.append(web.AppRunner(service.metrics_app(), access_log=None))
    try:
        for runner, p in zip(runners, (port, metrics_port), strict=False):
            await runner.setup()
            await web.TCPSite(runner, host, p).start()
        service.logger.info(
            "router on http://%s:%d -> %s%s", host, port, service.settings.upstream,
            f", metrics on http://{host}:{metrics_port}/metrics" if metrics_port else "",
        )  # fmt: skip
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def serve(config: Path, settings: ProxySettings, host: str, port: int,
          logger: logging.Logger, *, metrics_port: int | None = None,
          metrics: GenAIMetrics | None = None) -> None:  # fmt: skip
    """Run the router service until interrupted (SIGINT or SIGTERM); the gen_ai metrics on
    ``metrics_port`` when given."""
    service = RouterService(settings, ConfigHolder(config, logger), logger, metrics)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await _serve(service, host, port, metrics_port)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
