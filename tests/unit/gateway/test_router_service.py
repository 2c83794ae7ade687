"""The router service end to end, over real HTTP on 127.0.0.1: a fake upstream records what
it gets; the router in front picks the model per tier and tenant, sets ``x-ai-eg-model`` and
the body's ``model``, passes streams and upstream errors through, rejects bad bodies with a
400 naming the field, and reloads its configuration (keeping the last good one)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmfleet.cli import main as cli_main
from llmfleet.gateway.config import ConfigHolder, save_artefact
from llmfleet.gateway.proxy import ProxySettings, RouterService
from llmfleet.routing.models.serving import fit_tier
from unit.routing.test_model_router import synthetic

EASY = "what is the capital of france"
HARD = "prove the theorem on primes"
SMALL, LARGE = "org/small", "org/large"
SSE = [
    b'data: {"choices":[{"text":"a"}]}\n\n',
    b'data: {"choices":[{"text":"b"}]}\n\n',
    b"data: [DONE]\n\n",
]


@functools.cache
def _fitted():
    return fit_tier(synthetic(600, seed=5), "quality", target_drop_points=2.0, bits=12, folds=3)


def _config(tmp: Path, lam: float | None = 0.3, **extra: Any) -> dict[str, Any]:
    fitted = _fitted()
    save_artefact(tmp / "fast.npz", fitted.members)
    tier = {
        "kind": "quality", "reference": "large", "lambda": lam, "costScale": 20.0, "bits": 12,
        "artefact": "fast.npz",
        "candidates": [
            {"model": "small", "servedName": SMALL, "costIntercept": 1.0, "costPerChar": 0.0},
            {"model": "large", "servedName": LARGE, "costIntercept": 20.0, "costPerChar": 0.0},
        ],
        "tenants": {"pinned": ["large"]},
        **extra,
    }  # fmt: skip
    assert list(fitted.models) == ["small", "large"]
    return {"apiVersion": "llmfleet.dev/router/v1", "tiers": {"fast": tier}}


def _write(path: Path, doc: dict[str, Any], as_config_map: bool = True) -> None:
    if as_config_map:
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r"},
               "data": {"router.json": json.dumps(doc)}}  # fmt: skip
    path.write_text(json.dumps(doc))


class Upstream:
    """Records every request; streams when asked; fails with 503 on ``x-fail``."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.got.append(
            {
                "path": request.path_qs,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
        if request.headers.get("x-fail"):
            return web.json_response({"error": {"message": "overloaded"}}, status=503,
                                     headers={"retry-after": "7"})  # fmt: skip
        if body and body.get("stream"):
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            for chunk in SSE:
                await resp.write(chunk)
                await asyncio.sleep(0.02)
            await resp.write_eof()
            return resp
        return web.json_response({"model": body.get("model") if body else None, "ok": True})


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


Scenario = Callable[[aiohttp.ClientSession, str, Upstream], Awaitable[None]]


def _run(tmp: Path, scenario: Scenario, config: dict[str, Any] | None = None,
         upstream_url: str | None = None, logger: logging.Logger | None = None) -> None:  # fmt: skip
    path = tmp / "router.yaml"
    _write(path, config if config is not None else _config(tmp))

    async def main() -> None:
        upstream = Upstream()
        up_app = web.Application()
        up_app.router.add_route("*", "/{tail:.*}", upstream.handle)
        async with _serve(up_app) as up_url:
            settings = ProxySettings(upstream_url or up_url, connect_seconds=2, read_seconds=5,
                                     reload_seconds=0.05)  # fmt: skip
            log = logger or logging.getLogger("test.router")
            service = RouterService(settings, ConfigHolder(path, log), log)
            async with _serve(service.app()) as url:
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as client:
                    await scenario(client, url, upstream)

    asyncio.run(main())


def _completion(prompt: Any, model: Any = LARGE, **kw: Any) -> dict[str, Any]:
    body = {"prompt": prompt, "max_tokens": 8, **kw}
    if model is not None:
        body["model"] = model
    return body


def test_each_tier_gets_its_model_in_the_header_and_the_body(tmp_path):
    async def scenario(client, url, upstream):
        for prompt, want in ((EASY, SMALL), (HARD, LARGE)):
            async with client.post(f"{url}/v1/completions?x=1", json=_completion(prompt),
                                   headers={"x-tier": "fast", "authorization": "Bearer k"}) as r:  # fmt: skip
                assert r.status == 200 and (await r.json())["model"] == want
                assert (
                    r.headers["x-llmfleet-model"] == want
                    and r.headers["x-llmfleet-route"] == "routed"
                )
            got = upstream.got[-1]
            assert got["headers"]["x-ai-eg-model"] == want and got["body"]["model"] == want
            assert (
                got["path"] == "/v1/completions?x=1"
                and got["headers"]["authorization"] == "Bearer k"
            )
            assert got["body"]["prompt"] == prompt and got["body"]["max_tokens"] == 8
        # chat: the messages' text is what the router reads; no model in the body is fine
        chat = {"messages": [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": [{"type": "text", "text": EASY}]}]}  # fmt: skip
        async with client.post(
            f"{url}/v1/chat/completions", json=chat, headers={"x-tier": "fast"}
        ) as r:
            assert r.status == 200
        assert upstream.got[-1]["headers"]["x-ai-eg-model"] == SMALL
        assert upstream.got[-1]["body"]["messages"] == chat["messages"]
        # a tier that does not route, and no tier: the model as sent, in the header too
        for headers in ({"x-tier": "batch"}, {}):
            async with client.post(
                f"{url}/v1/completions", json=_completion(EASY), headers=headers
            ) as r:
                assert r.status == 200 and r.headers["x-llmfleet-route"] == "unrouted"
            assert upstream.got[-1]["headers"]["x-ai-eg-model"] == LARGE
            assert upstream.got[-1]["body"]["model"] == LARGE
        # a request naming the cheaper model explicitly is not routed up or down
        async with client.post(f"{url}/v1/completions", json=_completion(HARD, SMALL),
                               headers={"x-tier": "fast"}) as r:  # fmt: skip
            assert r.headers["x-llmfleet-route"] == "unrouted"
        assert upstream.got[-1]["headers"]["x-ai-eg-model"] == SMALL
        # a tenant that may use only the reference stays there
        async with client.post(f"{url}/v1/completions", json=_completion(EASY),
                               headers={"x-tier": "fast", "x-tenant-id": "pinned"}) as r:  # fmt: skip
            assert r.headers["x-llmfleet-route"] == "only-reference"
        assert upstream.got[-1]["headers"]["x-ai-eg-model"] == LARGE
        # the decision alone
        async with client.post(
            f"{url}/route", json=_completion(EASY), headers={"x-tier": "fast"}
        ) as r:
            assert await r.json() == {
                "tier": "fast",
                "model": SMALL,
                "candidate": "small",
                "reason": "routed",
            }
        n = len(upstream.got)
        async with client.get(f"{url}/healthz") as r:
            assert r.status == 200 and (await r.json())["tiers"] == ["fast"]
        assert len(upstream.got) == n  # /route and /healthz stay in the router

    _run(tmp_path, scenario)


def test_streams_pass_through_unchanged(tmp_path):
    async def scenario(client, url, upstream):
        async with client.post(f"{url}/v1/completions", json=_completion(EASY, stream=True),
                               headers={"x-tier": "fast"}) as r:  # fmt: skip
            assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
            chunks = [c async for c in r.content.iter_any()]
        assert b"".join(chunks) == b"".join(SSE)
        assert len(chunks) >= 2, "the answer arrives as it is produced, not buffered"
        assert upstream.got[-1]["body"]["stream"] is True

    _run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (json.dumps(_completion(EASY, model=7)).encode(), "model", "model must be a string"),
        (json.dumps(_completion(None)).encode(), "prompt", "prompt must be"),
        (json.dumps(_completion({"text": "x"})).encode(), "prompt", "prompt must be"),
    ],
    ids=["not-json", "not-an-object", "model-not-a-string", "no-prompt", "prompt-an-object"],
)
def test_a_bad_body_is_a_400_naming_the_field(tmp_path, body, param, fragment):
    async def scenario(client, url, upstream):
        async with client.post(f"{url}/v1/completions", data=body, headers={"x-tier": "fast"}) as r:
            assert r.status == 400
            err = (await r.json())["error"]
        assert fragment in err["message"] and err["param"] == param
        assert err["type"] == "invalid_request_error"
        assert upstream.got == []

    _run(tmp_path, scenario)


def test_chat_and_model_errors(tmp_path):
    async def scenario(client, url, upstream):
        cases = [
            ({"messages": "hi"}, {"x-tier": "fast"}, "messages"),
            (
                {"messages": [{"role": "user", "content": 3}]},
                {"x-tier": "fast"},
                "messages[0].content",
            ),
            ({"prompt": EASY}, {"x-tier": "batch"}, "model"),
        ]
        for body, headers, param in cases:
            path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
            async with client.post(url + path, json=body, headers=headers) as r:
                assert r.status == 400 and (await r.json())["error"]["param"] == param
        assert upstream.got == []

    _run(tmp_path, scenario)


def test_upstream_errors_come_back_with_their_status(tmp_path):
    async def scenario(client, url, upstream):
        async with client.post(f"{url}/v1/completions", json=_completion(EASY),
                               headers={"x-tier": "fast", "x-fail": "1"}) as r:  # fmt: skip
            assert r.status == 503 and r.headers["retry-after"] == "7"
            assert (await r.json()) == {"error": {"message": "overloaded"}}
        assert upstream.got[-1]["headers"]["x-ai-eg-model"] == SMALL

    _run(tmp_path, scenario)


def test_an_unreachable_upstream_is_a_502(tmp_path):
    async def scenario(client, url, upstream):
        async with client.post(
            f"{url}/v1/completions", json=_completion(EASY), headers={"x-tier": "fast"}
        ) as r:
            assert r.status == 502
            assert "upstream" in (await r.json())["error"]["message"]

    _run(tmp_path, scenario, upstream_url="http://127.0.0.1:9")


def test_the_config_reloads_and_a_bad_one_keeps_the_last_good(tmp_path, caplog):
    path = tmp_path / "router.yaml"

    async def ask(client, url) -> str:
        async with client.post(
            f"{url}/route", json=_completion(EASY), headers={"x-tier": "fast"}
        ) as r:
            return str((await r.json())["model"])

    async def wait_for(cond, client, url) -> None:
        for _ in range(100):
            if await cond(client, url):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the router did not reload")

    async def scenario(client, url, upstream):
        assert await ask(client, url) == SMALL
        _write(path, _config(tmp_path, lam=None), as_config_map=False)  # the key alone

        async def reference(c, u):
            return await ask(c, u) == LARGE

        await wait_for(reference, client, url)
        path.write_text(
            '{"apiVersion": "llmfleet.dev/router/v1", "tiers": {"fast": {"kind": "llm"}}}'
        )

        async def failed(c, u):
            async with c.get(f"{u}/healthz") as r:
                return (await r.json())["lastError"] is not None

        await wait_for(failed, client, url)
        assert await ask(client, url) == LARGE  # the last good configuration
        _write(path, _config(tmp_path))

        async def routed(c, u):
            return await ask(c, u) == SMALL

        await wait_for(routed, client, url)

    with caplog.at_level(logging.INFO, logger="test.router"):
        _run(tmp_path, scenario)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "tiers.fast.kind" in errors[0].getMessage()
    assert "keeping config" in errors[0].getMessage()


def test_no_config_yet_is_unhealthy_and_forwards_unrouted(tmp_path):
    async def scenario(client, url, upstream):
        async with client.get(f"{url}/healthz") as r:
            assert r.status == 503
        async with client.post(
            f"{url}/v1/completions", json=_completion(EASY), headers={"x-tier": "fast"}
        ) as r:
            assert r.status == 200 and r.headers["x-llmfleet-route"] == "unrouted"

    _run(tmp_path, scenario, config={"apiVersion": "nope"})


def test_cli_refuses_a_bad_upstream_or_a_missing_config(tmp_path, capsys):
    assert (
        cli_main(
            ["router", "serve", "--config", str(tmp_path / "none.json"), "--upstream", "http://x:1"]
        )
        == 1
    )
    assert "--config" in capsys.readouterr().err
    (tmp_path / "c.json").write_text("{}")
    assert (
        cli_main(["router", "serve", "--config", str(tmp_path / "c.json"), "--upstream", "x:1"])
        == 1
    )
    assert "--upstream" in capsys.readouterr().err
