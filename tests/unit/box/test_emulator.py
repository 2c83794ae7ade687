"""The vLLM emulator on 127.0.0.1: OpenAI streaming and non-streaming, usage, errors,
/metrics with vLLM's names, and latency/throughput against the profile's analytic numbers."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from llmfleet.box.batching import ReplicaProfile
from llmfleet.box.emulator import EmulatorConfig, make_app

SERVED = "meta-llama/Llama-3.1-8B-Instruct"
# a fast profile: 2,000 prompt tokens/s, 800 decode tokens/s, 16 sequences (knee s C = 4)
FAST = ReplicaProfile(2000.0, 800.0, 16, 0.25)
TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)


@asynccontextmanager
async def emulator(cfg: EmulatorConfig) -> AsyncIterator[str]:
    runner = web.AppRunner(make_app(cfg), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def run(test: Callable[[str], Awaitable[None]], cfg: EmulatorConfig | None = None) -> None:
    async def main() -> None:
        async with emulator(cfg or EmulatorConfig(SERVED, FAST, ("llama-3-1-8b",))) as url:
            await test(url)

    asyncio.run(main())


async def _stream(
    s: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[list[dict[str, Any]], float, float]:
    """(chunks, TTFT, e2e) of one streaming request."""
    t0 = time.monotonic()
    ttft = float("nan")
    chunks: list[dict[str, Any]] = []
    async with s.post(url, json={**body, "stream": True}, timeout=TIMEOUT) as rsp:
        assert rsp.status == 200 and rsp.headers["Content-Type"].startswith("text/event-stream")
        done = False
        async for raw in rsp.content:
            line = raw.decode().strip()
            if not line:
                continue
            assert line.startswith("data: ")
            if line == "data: [DONE]":
                done = True
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and math.isnan(ttft):
                ttft = time.monotonic() - t0
            chunks.append(chunk)
        assert done
    return chunks, ttft, time.monotonic() - t0


async def _metrics(s: aiohttp.ClientSession, url: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    async with s.get(url + "/metrics", timeout=TIMEOUT) as rsp:
        text = await rsp.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _lab(**extra: str) -> tuple[Any, ...]:
    return tuple(sorted({"model_name": SERVED, "engine": "0", **extra}.items()))


def test_streaming_chat_and_completions_carry_usage_and_match_the_profile() -> None:
    async def test(url: str) -> None:
        async with aiohttp.ClientSession() as s:
            prompt = " ".join(["w"] * 400)  # 400 tokens: prefill 0.2 s
            chunks, ttft, e2e = await _stream(
                s, url + "/v1/chat/completions",
                {"model": SERVED, "messages": [{"role": "user", "content": prompt}],
                 "max_tokens": 40},
            )  # fmt: skip
            assert chunks[0]["object"] == "chat.completion.chunk"
            assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
            text = "".join(
                c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]
            )
            assert len(text.split()) == 40
            assert chunks[-2]["choices"][0]["finish_reason"] == "length"
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
                "prompt_tokens": 400, "completion_tokens": 40, "total_tokens": 440,
            }  # fmt: skip
            # analytic: TTFT = 400 / 2000 = 0.2 s; e2e = 0.2 + 40 / (800 / 4) = 0.4 s
            assert ttft == pytest.approx(FAST.unloaded_ttft(400), abs=0.08)
            assert e2e == pytest.approx(FAST.unloaded_e2e(400, 40), abs=0.1)

            chunks, _, _ = await _stream(
                s, url + "/v1/completions",
                {"model": "llama-3-1-8b", "prompt": "a b c", "max_tokens": 5},
            )  # fmt: skip
            assert chunks[0]["object"] == "text_completion"
            assert (
                "".join(c["choices"][0]["text"] for c in chunks if c["choices"]).split()
                == ["tok"] * 5
            )
            assert chunks[-1]["usage"]["completion_tokens"] == 5

    run(test)


def test_non_streaming_and_errors_the_client_sees() -> None:
    async def test(url: str) -> None:
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/completions", timeout=TIMEOUT,
                              json={"model": SERVED, "prompt": "x y", "max_tokens": 3}) as rsp:  # fmt: skip
                body = await rsp.json()
            assert rsp.status == 200 and body["usage"]["total_tokens"] == 5
            assert body["choices"][0]["finish_reason"] == "length"
            async with s.post(url + "/v1/chat/completions", timeout=TIMEOUT, json={
                "model": SERVED, "max_completion_tokens": 2,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            }) as rsp:  # fmt: skip
                body = await rsp.json()
            assert body["choices"][0]["message"]["content"].split() == ["tok", "tok"]
            for payload, status, param in [
                ({"model": "other", "prompt": "x"}, 404, "model"),
                ({"model": SERVED, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
                ({"model": SERVED, "prompt": 3}, 400, "prompt"),
                ({"model": SERVED, "prompt": "x", "stream": "yes"}, 400, "stream"),
            ]:
                async with s.post(url + "/v1/completions", json=payload, timeout=TIMEOUT) as rsp:
                    err = await rsp.json()
                assert (rsp.status, err["error"]["param"]) == (status, param), payload
            async with s.post(url + "/v1/completions", data=b"{", timeout=TIMEOUT) as rsp:
                assert rsp.status == 400
            async with s.get(url + "/health", timeout=TIMEOUT) as rsp:
                assert rsp.status == 200

    run(test)


def test_metrics_parse_and_counters_add_up_to_what_was_sent() -> None:
    n, prompt_words, out_tokens = 12, 50, 20

    async def test(url: str) -> None:
        async with aiohttp.ClientSession() as s:
            body = {"model": SERVED, "prompt": " ".join(["w"] * prompt_words),
                    "max_tokens": out_tokens}  # fmt: skip
            t0 = time.monotonic()
            await asyncio.gather(*[_stream(s, url + "/v1/completions", body) for _ in range(n)])
            wall = time.monotonic() - t0
            m = await _metrics(s, url)
        assert m[("vllm:prompt_tokens_total", _lab())] == n * prompt_words
        assert m[("vllm:generation_tokens_total", _lab())] == n * out_tokens
        assert m[("vllm:request_success_total", _lab(finished_reason="length"))] == n
        assert m[("vllm:request_success_total", _lab(finished_reason="abort"))] == 0
        assert m[("vllm:time_to_first_token_seconds_count", _lab())] == n
        assert m[("vllm:e2e_request_latency_seconds_count", _lab())] == n
        assert m[("vllm:inter_token_latency_seconds_count", _lab())] == n
        assert m[("vllm:e2e_request_latency_seconds_bucket", _lab(le="+Inf"))] == n
        assert m[("vllm:num_requests_running", _lab())] == 0
        assert m[("vllm:num_requests_waiting", _lab())] == 0
        assert m[("vllm:kv_cache_usage_perc", _lab())] == 0
        # 12 requests, 16 slots: all batched; the work is 12 x 50 / 2000 s of prefill plus
        # 20 tokens each at D / max(n, sC) -- throughput close to the analytic bound
        analytic = n * prompt_words / FAST.prefill_tokens_per_second + out_tokens / (
            FAST.decode_tokens_per_second / n
        )
        assert wall == pytest.approx(analytic, rel=0.3)

    run(test)


def test_a_full_queue_answers_503_and_a_vanished_client_is_an_abort() -> None:
    cfg = EmulatorConfig(SERVED, ReplicaProfile(2000.0, 100.0, 1, 1.0), max_waiting=1)

    async def test(url: str) -> None:
        async with aiohttp.ClientSession() as s:
            body = {"model": SERVED, "prompt": "x", "max_tokens": 50, "stream": True}
            first = await s.post(url + "/v1/completions", json=body, timeout=TIMEOUT)
            second = await s.post(url + "/v1/completions", json=body, timeout=TIMEOUT)
            await asyncio.sleep(0.05)
            async with s.post(url + "/v1/completions", json=body, timeout=TIMEOUT) as third:
                assert third.status == 503
            first.close()  # the client goes away mid-stream
            second.close()
            await asyncio.sleep(0.2)
            m = await _metrics(s, url)
        assert m[("vllm:request_success_total", _lab(finished_reason="abort"))] == 2
        assert m[("vllm:num_requests_running", _lab())] == 0

    run(test, cfg)
