"""A load generator: replays a slice of a trace against an OpenAI-compatible base URL.

:func:`plan_azure` (pure) turns a slice of an Azure LLM 2023 trace
(:func:`llmfleet.sim.traces.read_azure`: arrival, prompt and output tokens) into
:class:`Planned` requests: arrivals from ``start_s`` for ``duration_s`` seconds of trace,
compressed ``speedup`` times, token counts scaled by ``token_scale`` (at least 1), each with
a tenant, tier and origin (cycled from the lists given). :func:`replay` sends each at its
time, streaming (``/v1/chat/completions`` or ``/v1/completions``), with the headers
``x-tenant-id``, ``x-tier``, ``x-origin-region``, and records one :class:`Outcome` per
request, whatever happens: the HTTP status (0 when no answer came: refused, reset, timed
out, with the error's type), TTFT (first content chunk), e2e, and the usage it reported.
:func:`summarize` (pure) counts them: ``sent == ok + http_errors + transport_errors``.

CLI: ``python -m llmfleet.box.loadgen --base-url URL --model NAME --trace conv --start 0
--duration 60 --speedup 1 --token-scale 0.05 --tenant acme --tier interactive-fast
--origin us-east --out summary.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from llmfleet.sim.traces import AzureService, AzureTrace, read_azure

TENANT_HEADER = "x-tenant-id"
TIER_HEADER = "x-tier"
ORIGIN_HEADER = "x-origin-region"
Api = Literal["chat", "completions"]


@dataclass(frozen=True)
class Planned:
    """One request to send ``at`` seconds after the replay starts."""

    index: int
    at: float
    prompt_tokens: int
    output_tokens: int
    tenant: str
    tier: str
    origin: str


@dataclass
class Outcome:
    """What the client saw of one request."""

    index: int
    tenant: str
    tier: str
    origin: str
    sent_at: float
    status: int = 0
    """HTTP status; 0: no HTTP answer (see ``error``)."""
    error: str | None = None
    ttft: float = math.nan
    e2e: float = math.nan
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    planned_prompt_tokens: int = 0
    planned_output_tokens: int = 0
    target: str = ""
    """Where it was sent (a router's serving region; empty: the base URL)."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def plan_azure(
    trace: AzureTrace, *, start_s: float = 0.0, duration_s: float = 60.0, speedup: float = 1.0,
    token_scale: float = 1.0, max_requests: int | None = None, tenants: Sequence[str] = ("t0",),
    tiers: Sequence[str] = ("interactive",), origins: Sequence[str] = ("local",),
) -> list[Planned]:  # fmt: skip
    """The requests of the trace's ``[start_s, start_s + duration_s)`` (pure)."""
    if speedup <= 0 or token_scale <= 0 or duration_s <= 0:
        raise ValueError("speedup, token_scale and duration_s must be > 0")
    if not (tenants and tiers and origins):
        raise ValueError("give at least one tenant, tier and origin")
    out: list[Planned] = []
    for i in range(len(trace)):
        t = float(trace.arrival_s[i])
        if t < start_s:
            continue
        if t >= start_s + duration_s or (max_requests is not None and len(out) >= max_requests):
            break
        n = len(out)
        out.append(
            Planned(
                index=n,
                at=(t - start_s) / speedup,
                prompt_tokens=max(1, round(int(trace.prompt_tokens[i]) * token_scale)),
                output_tokens=max(1, round(int(trace.output_tokens[i]) * token_scale)),
                tenant=tenants[n % len(tenants)],
                tier=tiers[n % len(tiers)],
                origin=origins[n % len(origins)],
            )
        )
    return out


def _body(p: Planned, model: str, api: Api) -> dict[str, Any]:
    text = " ".join(["word"] * p.prompt_tokens)
    common = {
        "model": model, "max_tokens": p.output_tokens, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    if api == "chat":
        return {**common, "messages": [{"role": "user", "content": text}]}
    return {**common, "prompt": text}


Router = Callable[[Planned], "tuple[str, str] | None"]
"""Where one request goes: (target name, base URL); None: nowhere (the outcome is the
transport error ``NoRoute``)."""


async def _one(
    session: aiohttp.ClientSession, url: str, model: str, api: Api, p: Planned, t0: float,
    timeout: aiohttp.ClientTimeout, router: Router | None = None,
) -> Outcome:  # fmt: skip
    await asyncio.sleep(max(0.0, t0 + p.at - time.monotonic()))
    start = time.monotonic()
    o = Outcome(
        p.index, p.tenant, p.tier, p.origin, start - t0,
        planned_prompt_tokens=p.prompt_tokens, planned_output_tokens=p.output_tokens,
    )  # fmt: skip
    if router is not None:
        where = router(p)
        if where is None:
            o.error, o.e2e = "NoRoute", 0.0
            return o
        o.target, base = where
        url = base.rstrip("/") + url
    headers = {TENANT_HEADER: p.tenant, TIER_HEADER: p.tier, ORIGIN_HEADER: p.origin}
    try:
        async with session.post(
            url, json=_body(p, model, api), headers=headers, timeout=timeout
        ) as rsp:
            o.status = rsp.status
            if rsp.status != 200:
                await rsp.read()
            else:
                async for raw in rsp.content:
                    line = raw.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        piece = choice.get("text") or (choice.get("delta") or {}).get("content")
                        if piece:
                            o.chunks += 1
                            if math.isnan(o.ttft):
                                o.ttft = time.monotonic() - start
                    usage = chunk.get("usage")
                    if usage:
                        o.prompt_tokens = int(usage.get("prompt_tokens", 0))
                        o.completion_tokens = int(usage.get("completion_tokens", 0))
            o.e2e = time.monotonic() - start
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError, UnicodeDecodeError) as err:
        o.error = type(err).__name__
        o.e2e = time.monotonic() - start
    return o


async def replay(
    base_url: str, model: str, planned: Sequence[Planned], *, api: Api = "chat",
    timeout_s: float = 120.0, connect_timeout_s: float = 5.0, max_connections: int = 1000,
    router: Router | None = None, force_close: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:  # fmt: skip
    """Send every planned request at its time; one :class:`Outcome` each, in plan order.
    ``router``: each request's base URL instead of ``base_url`` (e.g. the plan's routing,
    :class:`llmfleet.box.routes.RouteFollower`); ``force_close``: one connection per request
    (a Service's balancer then sees every request, not only every connection);
    ``on_outcome``: called with each outcome as it completes."""
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    url = path if router is not None else base_url.rstrip("/") + path
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
    conn = aiohttp.TCPConnector(limit=max_connections, force_close=force_close)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.monotonic()

        async def one(p: Planned) -> Outcome:
            o = await _one(session, url, model, api, p, t0, timeout, router)
            if on_outcome is not None:
                on_outcome(o)
            return o

        return list(await asyncio.gather(*(one(p) for p in planned)))


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    v = sorted(x for x in values if not math.isnan(x))
    if not v:
        return {"p50": None, "p95": None, "p99": None, "mean": None}

    def q(p: float) -> float:
        return v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))]

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "mean": sum(v) / len(v)}


@dataclass(frozen=True)
class Summary:
    sent: int
    ok: int
    http_errors: dict[str, int]
    transport_errors: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    ttft_seconds: dict[str, float | None]
    e2e_seconds: dict[str, float | None]
    wall_seconds: float
    by_tenant: dict[str, int] = field(default_factory=dict)
    by_target: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(outcomes: Sequence[Outcome], wall_seconds: float) -> Summary:
    """Counts and latency quantiles of the outcomes (pure); every outcome is in exactly one
    of ``ok``, ``http_errors`` (by status) and ``transport_errors`` (by error type)."""
    http: dict[str, int] = {}
    transport: dict[str, int] = {}
    tenants: dict[str, int] = {}
    targets: dict[str, int] = {}
    ok = [o for o in outcomes if o.ok]
    for o in outcomes:
        tenants[o.tenant] = tenants.get(o.tenant, 0) + 1
        if o.target:
            targets[o.target] = targets.get(o.target, 0) + 1
        if o.error is not None:
            transport[o.error] = transport.get(o.error, 0) + 1
        elif o.status != 200:
            http[str(o.status)] = http.get(str(o.status), 0) + 1
    return Summary(
        sent=len(outcomes),
        ok=len(ok),
        http_errors=dict(sorted(http.items())),
        transport_errors=dict(sorted(transport.items())),
        prompt_tokens=sum(o.prompt_tokens for o in ok),
        completion_tokens=sum(o.completion_tokens for o in ok),
        ttft_seconds=_quantiles([o.ttft for o in ok]),
        e2e_seconds=_quantiles([o.e2e for o in ok]),
        wall_seconds=wall_seconds,
        by_tenant=dict(sorted(tenants.items())),
        by_target=dict(sorted(targets.items())),
    )


def _no_nan(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmfleet.box.loadgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True, help="the OpenAI model field")
    ap.add_argument("--trace", choices=("code", "conv"), default="conv",
                    help="Azure LLM 2023 service")  # fmt: skip
    ap.add_argument("--traces-dir", type=Path, default=None)
    ap.add_argument("--start", type=float, default=0.0, help="trace second to start at")
    ap.add_argument("--duration", type=float, default=60.0, help="trace seconds to replay")
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--token-scale", type=float, default=1.0)
    ap.add_argument("--max-requests", type=int, default=None)
    ap.add_argument("--tenant", default="t0", help="comma-separated, cycled")
    ap.add_argument("--tier", default="interactive", help="comma-separated, cycled")
    ap.add_argument("--origin", default="local", help="comma-separated, cycled")
    ap.add_argument("--api", choices=("chat", "completions"), default="chat")
    ap.add_argument("--connection-per-request", action="store_true",
                    help="no keep-alive: every request on its own connection")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    ap.add_argument("--out", type=Path, default=None, help="JSON summary (and outcomes)")
    args = ap.parse_args(argv)
    service: AzureService = args.trace
    planned = plan_azure(
        read_azure(service, args.traces_dir), start_s=args.start, duration_s=args.duration,
        speedup=args.speedup, token_scale=args.token_scale, max_requests=args.max_requests,
        tenants=_csv(args.tenant), tiers=_csv(args.tier), origins=_csv(args.origin),
    )  # fmt: skip
    t = time.monotonic()
    outcomes = asyncio.run(
        replay(
            args.base_url,
            args.model,
            planned,
            api=args.api,
            timeout_s=args.timeout,
            force_close=args.connection_per_request,
        )
    )
    summary = summarize(outcomes, time.monotonic() - t)
    doc = {"summary": summary.to_json(), "outcomes": [_no_nan(asdict(o)) for o in outcomes]}
    text = json.dumps(doc, indent=1, allow_nan=False)
    if args.out is not None:
        args.out.write_text(text)
    print(json.dumps(summary.to_json(), indent=1))
    return 0 if summary.ok == summary.sent else 1


if __name__ == "__main__":
    raise SystemExit(main())
