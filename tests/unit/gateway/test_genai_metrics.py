"""The gateway's gen_ai demand metrics (Envoy AI Gateway's names and labels): the observer
reads usage from JSON answers and from streams split anywhere, the header mapping parses as
Envoy AI Gateway's ``metricsRequestHeaderAttributes``, and through the router service over real
HTTP the series carry the tokens the upstream reported, per model, tenant and tier, the
failures with ``error_type``; the envoy-ai-gateway query profile's metric names are the ones
exported."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from llmfleet.api.policy import PROFILE_TEMPLATES
from llmfleet.gateway.config import ConfigHolder
from llmfleet.gateway.genai import (
    GenAIMetrics,
    HeaderAttribute,
    HeaderMappingError,
    StreamObserver,
    parse_header_attributes,
)
from llmfleet.gateway.proxy import ProxySettings, RouterService

MAPPING = "x-tenant-id:tenant.id, x-tier:tier"


def _sse(model: str, texts: list[str], usage: dict[str, int] | None) -> bytes:
    events = [{"model": model, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    events += [{"model": model, "choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    if usage is not None:
        events.append({"model": model, "choices": [], "usage": usage})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


def test_header_attributes_parse_as_envoy_ai_gateway_writes_them():
    assert parse_header_attributes(MAPPING) == (
        HeaderAttribute("x-tenant-id", "tenant_id"), HeaderAttribute("x-tier", "tier"),
    )  # fmt: skip
    assert parse_header_attributes("") == ()
    for bad, says in (("x-tier", "header:attribute"), ("x-a:tier,x-b:tier", "twice"),
                      ("x-a:gen_ai.request.model", "not a label"), ("x-a:9x", "not a label")):  # fmt: skip
        with pytest.raises(HeaderMappingError, match=says):
            parse_header_attributes(bad)


@pytest.mark.parametrize("cut", [1, 7, 33, 10_000])
def test_a_stream_split_anywhere_gives_its_usage_and_first_content_time(cut):
    body = _sse("org/m", ["a", "b", "c"], {"prompt_tokens": 11, "completion_tokens": 3})
    seen = StreamObserver(streaming=True)
    for i in range(0, len(body), cut):
        seen.feed(body[i : i + cut], elapsed=float(i))
    obs = seen.finish(duration=99.0, success=True)
    assert (obs.input_tokens, obs.output_tokens, obs.response_model) == (11, 3, "org/m")
    # the first event with content (not the role-only one) sets the TTFT: when its line ended
    end = body.index(b"\n", body.index(b'"content"'))
    assert obs.ttft == end // cut * cut


def test_json_answers_and_streams_without_usage():
    seen = StreamObserver(streaming=False)
    doc = {"model": "org/m", "choices": [{"text": "x"}],
           "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}  # fmt: skip
    raw = json.dumps(doc).encode()
    seen.feed(raw[:10], 0.1)
    seen.feed(raw[10:], 0.2)
    obs = seen.finish(0.3, True)
    assert (obs.input_tokens, obs.output_tokens, obs.ttft) == (5, 2, None)
    nousage = StreamObserver(streaming=True)
    nousage.feed(_sse("org/m", ["a"], None), 0.1)
    obs = nousage.finish(0.2, True)
    assert (obs.input_tokens, obs.output_tokens, obs.ttft) == (None, None, 0.1)


class Upstream:
    """An OpenAI-like upstream: usage = words of the prompt, max_tokens out; 503 on x-fail."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        if request.headers.get("x-fail"):
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        text = body.get("prompt") or body["messages"][-1]["content"]
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": body["max_tokens"]}
        served = body["model"] + "-v1"
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(_sse(served, ["t"] * body["max_tokens"], usage))
            await resp.write_eof()
            return resp
        return web.json_response({"model": served, "choices": [{"text": "t"}], "usage": usage})


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def _sum(samples: list[tuple[str, dict[str, str], float]], name: str, **want: str) -> float:
    return sum(
        v for n, lab, v in samples
        if n == name and all(lab.get(k, "") == w for k, w in want.items())
    )  # fmt: skip


def test_through_the_router_the_series_carry_the_upstreams_usage(tmp_path: Path):
    config = tmp_path / "router.json"
    config.write_text(json.dumps({"apiVersion": "llmfleet.dev/router/v1", "tiers": {}}))
    sent: dict[tuple[str, str, str, str], int] = {}

    async def main() -> str:
        up_app = web.Application()
        up_app.router.add_post("/{tail:.*}", Upstream().handle)
        async with _serve(up_app) as up_url:
            log = logging.getLogger("test.genai")
            service = RouterService(
                ProxySettings(up_url, connect_seconds=2, read_seconds=5), ConfigHolder(config, log),
                log, GenAIMetrics(parse_header_attributes(MAPPING)),
            )  # fmt: skip
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                _serve(service.app()) as url, _serve(service.metrics_app()) as murl,
                aiohttp.ClientSession(timeout=timeout) as c,
            ):  # fmt: skip
                for i in range(12):
                    model, tenant, tier = ("org/a", "acme", "gold") if i % 3 else (
                        "org/b", "zed", "batch")  # fmt: skip
                    words, out = 3 + i, 1 + i % 4
                    stream = i % 2 == 0
                    path, body = (
                        ("/v1/chat/completions",
                         {"messages": [{"role": "user", "content": "w " * words}]})
                        if i % 4 < 2 else ("/v1/completions", {"prompt": "w " * words})
                    )  # fmt: skip
                    body |= {"model": model, "max_tokens": out, "stream": stream}
                    async with c.post(url + path, json=body, headers={
                        "x-tenant-id": tenant, "x-tier": tier}) as r:  # fmt: skip
                        assert r.status == 200
                        await r.read()
                    for kind, n in (("input", words), ("output", out)):
                        key = (model, tenant, tier, kind)
                        sent[key] = sent.get(key, 0) + n
                # an upstream error and no tier header: a failure, without tokens; tier ""
                # (Prometheus stores an empty label as none)
                async with c.post(url + "/v1/completions", headers={"x-fail": "1"},
                                  json={"model": "org/a", "prompt": "w"}) as r:  # fmt: skip
                    assert r.status == 503
                async with c.get(murl + "/metrics") as r:
                    assert r.status == 200
                    return await r.text()

    text = asyncio.run(main())
    samples = _samples(text)
    for (model, tenant, tier, kind), n in sent.items():
        assert _sum(samples, "gen_ai_client_token_usage_sum", gen_ai_request_model=model,
                    tenant_id=tenant, tier=tier, gen_ai_token_type=kind) == n  # fmt: skip
    assert _sum(samples, "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 12
    # labels as Envoy AI Gateway's: operation per endpoint, provider, original/response model
    ops = {lab["gen_ai_operation_name"] for n, lab, _ in samples if n.startswith("gen_ai_")}
    assert ops == {"chat", "completion"}
    assert {lab["gen_ai_response_model"] for n, lab, v in samples
            if n == "gen_ai_client_token_usage_count" and v} == {"org/a-v1", "org/b-v1"}  # fmt: skip
    assert all(lab["gen_ai_provider_name"] == "openai" for n, lab, _ in samples
               if n.startswith("gen_ai_"))  # fmt: skip
    assert _sum(samples, "gen_ai_server_request_duration_seconds_count", error_type="") == 12
    failed = [lab for n, lab, v in samples
              if n == "gen_ai_server_request_duration_seconds_count" and lab.get("error_type")]  # fmt: skip
    assert len(failed) == 1 and failed[0]["error_type"] == "_OTHER" and not failed[0]["tier"]
    # streams only (6 of the 12) get a TTFT
    assert _sum(samples, "gen_ai_server_time_to_first_token_seconds_count") == 6
    # the names the default query profile reads are exported
    for template in PROFILE_TEMPLATES["envoy-ai-gateway"].values():
        assert template is not None
        for name in re.findall(r"\b(gen_ai_[a-z_]+)(?:\{|\[)", template):
            assert any(n == name for n, _, _ in samples), name


def test_the_cli_names_a_bad_header_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from llmfleet.cli import main as cli_main

    (tmp_path / "c.json").write_text("{}")
    args = ["router", "serve", "--config", str(tmp_path / "c.json"), "--upstream", "http://x:1",
            "--metrics-header-attributes", "x-tier"]  # fmt: skip
    assert cli_main(args) == 1
    err = capsys.readouterr().err
    assert "--metrics-header-attributes" in err and "header:attribute" in err
