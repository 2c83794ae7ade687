"""The load generator: a trace slice becomes timed requests with the tenant, tier and
origin headers; every request's outcome is counted, against the emulator on 127.0.0.1
and against a port that refuses."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from llmfleet.box.batching import ReplicaProfile
from llmfleet.box.emulator import EmulatorConfig, make_app
from llmfleet.box.loadgen import (
    ORIGIN_HEADER,
    TENANT_HEADER,
    TIER_HEADER,
    Planned,
    main,
    plan_azure,
    replay,
    summarize,
)
from llmfleet.sim.traces import AzureTrace

SERVED = "m"


def _trace(n: int = 40) -> AzureTrace:
    return AzureTrace(
        service="conv",
        start_unix=0.0,
        arrival_s=np.arange(n, dtype=np.float64) * 0.5,
        prompt_tokens=np.full(n, 1000, dtype=np.int64),
        output_tokens=np.full(n, 100, dtype=np.int64),
    )


def test_a_slice_is_shifted_compressed_scaled_and_labelled() -> None:
    planned = plan_azure(
        _trace(), start_s=5.0, duration_s=5.0, speedup=10.0, token_scale=0.01,
        tenants=("a", "b"), tiers=("fast",), origins=("us", "eu", "ap"),
    )  # fmt: skip
    assert [p.at for p in planned] == pytest.approx([i * 0.05 for i in range(10)])
    assert {(p.prompt_tokens, p.output_tokens) for p in planned} == {(10, 1)}
    assert [p.tenant for p in planned[:3]] == ["a", "b", "a"]
    assert [p.origin for p in planned[:4]] == ["us", "eu", "ap", "us"]
    assert len(plan_azure(_trace(), duration_s=100.0, max_requests=7)) == 7
    with pytest.raises(ValueError, match="speedup"):
        plan_azure(_trace(), speedup=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_request_is_answered_and_counted_with_its_headers() -> None:
    seen: list[tuple[str, str, str]] = []
    planned = plan_azure(
        _trace(), duration_s=20.0, speedup=40.0, token_scale=0.02,
        tenants=("acme", "initech"), tiers=("interactive-fast",), origins=("us-east",),
    )  # fmt: skip

    async def main_() -> None:
        app = make_app(EmulatorConfig(SERVED, ReplicaProfile(20000.0, 4000.0, 64, 0.25)))

        @web.middleware
        async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
            h = request.headers
            seen.append((h[TENANT_HEADER], h[TIER_HEADER], h[ORIGIN_HEADER]))
            return await handler(request)

        app.middlewares.append(record)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            outcomes = await replay(f"http://127.0.0.1:{port}", SERVED, planned, timeout_s=20)
            bad = await replay(f"http://127.0.0.1:{port}", "other", planned[:3], timeout_s=20)
            gone = await replay(f"http://127.0.0.1:{_free_port()}", SERVED, planned[:2])
        finally:
            await runner.cleanup()
        s = summarize(outcomes, 1.0)
        assert s.sent == len(planned) == s.ok == 40
        assert s.prompt_tokens == sum(p.prompt_tokens for p in planned)
        assert s.completion_tokens == sum(p.output_tokens for p in planned)
        assert s.by_tenant == {"acme": 20, "initech": 20}
        assert s.ttft_seconds["p50"] is not None and s.ttft_seconds["p50"] < 1.0
        assert all(o.chunks == o.completion_tokens == 2 for o in outcomes)
        s = summarize(bad + gone, 1.0)
        assert (s.sent, s.ok, s.http_errors) == (5, 0, {"404": 3})
        assert sum(s.transport_errors.values()) == 2  # refused: counted, not lost

    asyncio.run(main_())
    assert len(seen) == 43 and ("acme", "interactive-fast", "us-east") in seen


def test_the_cli_writes_a_json_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmfleet.box.loadgen as lg

    monkeypatch.setattr(lg, "read_azure", lambda service, path=None: _trace(4))
    port = _free_port()  # nothing listens: every request is a transport error, all counted
    out = tmp_path / "summary.json"
    rc = main(["--base-url", f"http://127.0.0.1:{port}", "--model", SERVED, "--duration", "2",
               "--speedup", "20", "--out", str(out)])  # fmt: skip
    doc = json.loads(out.read_text())
    assert rc == 1 and doc["summary"]["sent"] == 4 and doc["summary"]["ok"] == 0
    assert sum(doc["summary"]["transport_errors"].values()) == 4
    assert len(doc["outcomes"]) == 4 and doc["outcomes"][0]["ttft"] is None


def test_planned_is_a_value() -> None:
    p = Planned(0, 0.0, 1, 1, "t", "tier", "o")
    assert p == Planned(0, 0.0, 1, 1, "t", "tier", "o")
