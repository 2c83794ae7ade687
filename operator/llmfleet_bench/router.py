r"""``llmfleet bench router``: what the router service adds to a request.

1. **Decision time.** A tier's router is fitted as the operator ships it
   (:func:`llmfleet.routing.models.serving.fit_tier`: hashed word 1-2-grams, 5-fold
   cross-fit, the knob calibrated for a 1-point drop) on ``--fit-prompts`` prompts of
   ``--data`` (as ``llmfleet bench routing`` reads it; RouteLLM's MMLU by default). Then, on
   one core (the process pinned to one CPU), each of ``--requests`` held-out prompts is timed
   from its text to the chosen model (featurise + every fold member + the knob), one at a
   time after a warm-up. The same prompts go through the scikit-learn routers the members
   were compiled from: the decisions must be identical (the count of differences is printed).
2. **Proxy overhead.** A trivial upstream (a fixed JSON answer) and ``llmfleet router
   serve`` run as separate processes on 127.0.0.1; ``--proxy-requests`` sequential
   ``/v1/completions`` requests go to the upstream directly, then through the router (which
   reads the body, decides, rewrites it, forwards); the overhead is the difference of the
   two latency distributions' p50 and p99.

Target (:data:`DECISION_P99_MS`): the decision's p99 below 2 ms on one core. The proxy
overhead is reported beside it (no target).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import numpy as np

from llmfleet.gateway.config import save_artefact
from llmfleet.routing.models import RoutingSet
from llmfleet.routing.models.policy import route
from llmfleet.routing.models.serving import (
    Candidate,
    FastHashing,
    FittedTier,
    TierRouter,
    fit_features,
    fit_tier,
)
from llmfleet_bench.routing import DEFAULT_DATA, load_datasets
from llmfleet_bench.targets import Threshold

DECISION_P99_MS = 2.0
KINDS = ("quality", "cluster", "good-enough", "random", "blend")

UPSTREAM = """
import sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.json_response({"id": "x", "choices": [{"text": "ok"}]})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _tier(fitted: FittedTier) -> TierRouter:
    cands = tuple(
        Candidate(m, m, float(fitted.cost.intercept[j]), float(fitted.cost.slope[j]))
        for j, m in enumerate(fitted.models)
    )
    return TierRouter("bench", fitted.kind, cands, fitted.reference, fitted.lam,
                      fitted.scale, fitted.bits, fitted.members)  # fmt: skip


def _pin_one_core() -> set[int] | None:
    if not hasattr(os, "sched_getaffinity"):
        return None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    return before


def _percentiles(ms: Sequence[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def decision_times(
    fitted: FittedTier, prompts: Sequence[str], warmup: int = 100
) -> tuple[list[float], list[float]]:
    """Per-request decision time of each prompt, ms, after ``warmup`` untimed ones: wall
    clock, and the thread's CPU time (what the decision costs the core, without the time
    other processes on a shared machine preempt it)."""
    tier = _tier(fitted)
    featuriser = FastHashing(fitted.bits)
    for p in prompts[:warmup]:
        tier.decide(p, featuriser)
    wall, cpu = [], []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for p in prompts:
        t0, c0 = clock(), cpu_clock()
        tier.decide(p, featuriser)
        c1, t1 = cpu_clock(), clock()
        wall.append((t1 - t0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    return wall, cpu


def mismatches(fitted: FittedTier, prompts: Sequence[str]) -> int:
    """Prompts whose served decision differs from the scikit-learn fold routers' (their
    mean utility on the features they were fitted on, then ``policy.route``)."""
    tier = _tier(fitted)
    featuriser = FastHashing(fitted.bits)
    fast = np.array([tier.decide(p, featuriser).index for p in prompts])
    if fitted.lam is None:
        return int((fast != fitted.reference).sum())
    x = fit_features(fitted.kind, fitted.bits, prompts)
    u = np.mean([r.utility(x) for r in fitted.routers], axis=0)
    seen = fitted.cost.predict(np.array([len(p) for p in prompts], dtype=np.float64))
    return int((fast != route(u, seen, fitted.lam, fitted.scale)).sum())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


async def _latencies(
    url: str, bodies: Sequence[dict[str, object]], headers: dict[str, str]
) -> list[float]:
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        for i, body in enumerate(bodies):
            t0 = time.perf_counter_ns()
            async with s.post(f"{url}/v1/completions", json=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status}")
            if i >= 50:  # warm-up
                out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def proxy_overhead(fitted: FittedTier, prompts: Sequence[str], n: int) -> dict[str, float]:
    """p50/p99 of direct and proxied requests, ms (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        save_artefact(Path(tmp) / "tier.npz", fitted.members)
        tier = _tier(fitted)
        doc = {"apiVersion": "llmfleet.dev/router/v1", "tiers": {"bench": {
            "kind": fitted.kind, "reference": fitted.models[fitted.reference],
            "lambda": fitted.lam, "costScale": fitted.scale, "bits": fitted.bits,
            "artefact": "tier.npz",
            "candidates": [{"model": c.model, "servedName": c.served_name,
                            "costIntercept": c.cost_intercept, "costPerChar": c.cost_per_char}
                           for c in tier.candidates]}}}  # fmt: skip
        config = Path(tmp) / "router.json"
        config.write_text(json.dumps(doc))
        up_port, port = _free_port(), _free_port()
        up = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
        router = subprocess.Popen([
            sys.executable, "-m", "llmfleet.cli", "router", "serve", "--config", str(config),
            "--upstream", f"http://127.0.0.1:{up_port}", "--port", str(port), "--log-level", "WARNING",
        ])  # fmt: skip
        try:
            asyncio.run(_wait(f"http://127.0.0.1:{up_port}/"))
            asyncio.run(_wait(f"http://127.0.0.1:{port}/healthz"))
            ref = tier.candidates[tier.reference].served_name
            bodies: list[dict[str, object]] = [
                {"model": ref, "prompt": prompts[i % len(prompts)], "max_tokens": 1}
                for i in range(n + 50)
            ]
            direct = asyncio.run(_latencies(f"http://127.0.0.1:{up_port}", bodies, {}))
            proxied = asyncio.run(
                _latencies(f"http://127.0.0.1:{port}", bodies, {"x-tier": "bench"})
            )
        finally:
            for p in (router, up):
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    d50, d99 = _percentiles(direct)
    p50, p99 = _percentiles(proxied)
    return {"direct_p50": d50, "direct_p99": d99, "proxy_p50": p50, "proxy_p99": p99}


def main(argv: Sequence[str] | None = None) -> int:
    """``llmfleet bench router``: decision time per request and proxy overhead."""
    parser = argparse.ArgumentParser(
        prog="llmfleet bench router",
        description="The router service's per-request cost: decision time (featurise + "
        "decide) on one core and the HTTP proxy's overhead (see the module docstring).",
    )
    default = Path(os.environ.get("LLMFLEET_ROUTING_DIR", DEFAULT_DATA / "mmlu"))
    parser.add_argument(
        "--data", type=Path, default=default, help=f"CSV file or folder (default {default})"
    )
    parser.add_argument(
        "--kinds", default="quality,cluster", help=f"comma-separated ({','.join(KINDS)})"
    )
    parser.add_argument("--fit-prompts", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=2000, help="timed decisions per router")
    parser.add_argument("--proxy-requests", type=int, default=1000, help="0: skip the proxy part")
    parser.add_argument("--bits", type=int, default=16, help="hashed feature columns: 2**bits")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target-drop", type=float, default=1.0, help="points")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown router kind {k!r} (choose from {', '.join(KINDS)})")
    name, data = load_datasets(args.data)[0]
    order = np.random.default_rng(0).permutation(data.n)
    fit_idx, test_idx = order[: args.fit_prompts], order[args.fit_prompts :]
    if test_idx.size == 0:
        parser.error(f"--fit-prompts {args.fit_prompts} leaves no prompt of {data.n} to time")
    fit_set: RoutingSet = data.subset(fit_idx)
    prompts = [data.prompts[int(i)] for i in test_idx]
    prompts = (prompts * (args.requests // len(prompts) + 1))[: args.requests]
    chars = np.array([len(p) for p in prompts])
    print(f"{name}: {data.n} prompts ({fit_set.n} to fit, {len(set(prompts))} timed, "
          f"median {np.median(chars):.0f} / p99 {np.percentile(chars, 99):.0f} characters); "
          f"2**{args.bits} hashed columns, {args.folds} fold members")  # fmt: skip
    target = Threshold("decision p99 (CPU time) on one core", DECISION_P99_MS, "ms")
    lines: list[str] = []
    fitted_first: FittedTier | None = None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs; decision times in ms")
    print(
        "| router | fit s | lambda | CPU p50 | CPU p99 | CPU max | wall p50 | wall p99 | differing from sklearn |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        t0 = time.perf_counter()
        fitted = fit_tier(fit_set, kind, args.target_drop, bits=args.bits, folds=args.folds)
        fit_s = time.perf_counter() - t0
        fitted_first = fitted_first or fitted
        before = _pin_one_core()
        try:
            wall, ms = decision_times(fitted, prompts)
        finally:
            if before is not None:
                os.sched_setaffinity(0, before)
        diff = mismatches(fitted, prompts[: min(len(prompts), 500)])
        p50, p99 = _percentiles(ms)
        w50, w99 = _percentiles(wall)
        lam = "none" if fitted.lam is None else f"{fitted.lam:.3g}"
        print(f"| {kind} | {fit_s:.1f} | {lam} | {p50:.3f} | {p99:.3f} | {max(ms):.3f} | {w50:.3f} "
              f"| {w99:.3f} | {diff} of {min(len(prompts), 500)} |", flush=True)  # fmt: skip
        lines.append(target.line(p99, f"{kind}; wall clock p99 {w99:.2f} ms at load {load:.1f}"))
    if args.proxy_requests > 0 and fitted_first is not None:
        o = proxy_overhead(fitted_first, prompts, args.proxy_requests)
        print()
        print(f"proxy ({fitted_first.kind} router, {args.proxy_requests} sequential requests, "
              "separate processes on 127.0.0.1):")  # fmt: skip
        print(
            f"  direct to the upstream: p50 {o['direct_p50']:.2f} ms, p99 {o['direct_p99']:.2f} ms"
        )
        print(f"  through the router:     p50 {o['proxy_p50']:.2f} ms, p99 {o['proxy_p99']:.2f} ms")
        print(f"  overhead:               p50 {o['proxy_p50'] - o['direct_p50']:.2f} ms, "
              f"p99 {o['proxy_p99'] - o['direct_p99']:.2f} ms")  # fmt: skip
    print("targets:")
    print("\n".join(lines))
    return 0
