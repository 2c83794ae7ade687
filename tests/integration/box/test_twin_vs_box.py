"""The twin checked against the box: one slice of the Azure conv trace replayed on a fixed
fleet of two replicas in the box (kwok pods, the harness's emulators behind the Service's
ClusterIP, the load generator measuring TTFT at the client) and on the twin
(llmfleet.sim.engine.Engine, the same LLMModel profile, the same two replicas, the same
requests at the same times). TTFT p50 and p95 agree within 15%; the replica counts over time
are printed from both.

Timing fidelity on a loaded 2-core machine: the profile is slow (300 prefill tokens/s, so a
request's prefill is ~0.4 s and TTFT is dominated by the model, not by the event loop's
wake-ups or the proxy's few milliseconds), every request has its own connection (the
harness's least-connections balancing then picks the least loaded replica, as the twin's
router does), and the box's clock is the emulators' own (the load generator only sends on
time). No operator: the fleet is fixed."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from boxfleet import Box, LoadThread

from llmfleet.api import KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.loading import parse_object, snapshot_of
from llmfleet.api.model import LLMModel
from llmfleet.api.region import Region
from llmfleet.box import sample
from llmfleet.box.loadgen import Planned, plan_azure, summarize
from llmfleet.kube import render
from llmfleet.kube.client import Cluster
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE
from llmfleet.sim.policy import FleetTarget, Observation
from llmfleet.sim.scenario import EngineSpec
from llmfleet.sim.traces import read_azure
from llmfleet.sim.workload import Workload
from support.fleetbox import NAMESPACE, wait_for

REGION = sample.REGIONS[0]
REPLICAS = 2
SLICE = (600.0, 36.0, 0.4)  # trace start s, trace seconds, speedup: 90 s, ~1.9 req/s
TOKEN_SCALE = 0.1
WARMUP = 60.0
"""Twin seconds before the first request (its nodes and replicas are up by then)."""
TOLERANCE = 0.15
FLEET = sample.BoxFleet(
    namespace=NAMESPACE, regions=(REGION,), prefill_tokens_per_second=300.0,
    decode_tokens_per_second=100.0, max_concurrent_sequences=8, ttft_p95_seconds=10.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    b = Box(Path(tmp_path_factory.mktemp("twinbox")) / "fleet")
    up = b.run("up", timeout=300)
    try:
        assert up.returncode == 0, f"fleet.sh up failed:\n{up.stdout}\n{up.stderr}"
        yield b
    finally:
        down = b.run("down", timeout=120)
        assert down.returncode == 0, down.stderr


def _objects() -> tuple[LLMModel, Region, list[Any]]:
    docs = sample.box_fleet(FLEET)
    objs = [parse_object(d, namespace=NAMESPACE) for d in docs]
    model = next(o for o in objs if isinstance(o, LLMModel))
    region = next(o for o in objs if isinstance(o, Region))
    return model, region, objs


def _planned() -> list[Planned]:
    start, seconds, speedup = SLICE
    return plan_azure(
        read_azure("conv"), start_s=start, duration_s=seconds, speedup=speedup,
        token_scale=TOKEN_SCALE, tenants=(sample.TENANT,), tiers=(FLEET.tier,),
        origins=(REGION,),
    )  # fmt: skip


class _Fixed:
    """The twin's policy: ``n`` replicas of the model in the region's pool, always."""

    name = "fixed"
    interval_seconds = 60.0

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: list[tuple[float, int]] = []

    def decide(self, obs: Observation) -> FleetTarget:
        ready = sum(s.ready for s in obs.replicas.values()) if obs.replicas else 0
        self.seen.append((obs.now, ready))
        return FleetTarget(replicas={(sample.MODEL, REGION, sample.POOL): self.n}, routes={})


def _twin(planned: list[Planned]) -> tuple[np.ndarray, list[tuple[float, int]]]:
    _, _, objs = _objects()
    snap = snapshot_of(objs)
    n = len(planned)
    wl = Workload(
        arrival=np.array([WARMUP + p.at for p in planned]),
        tenant=np.zeros(n, dtype=np.int64), model=np.zeros(n, dtype=np.int64),
        tier=np.zeros(n, dtype=np.int64), origin=np.zeros(n, dtype=np.int64),
        prompt=np.array([p.prompt_tokens for p in planned], dtype=np.int64),
        output=np.array([p.output_tokens for p in planned], dtype=np.int64),
        tenants=(sample.TENANT,), models=(sample.MODEL,), tiers=(FLEET.tier,),
        regions=(REGION,), duration=WARMUP + planned[-1].at + 120, start_unix=0.0,
        history_start_unix=0.0, history_step=300, history={},
    )  # fmt: skip
    policy = _Fixed(REPLICAS)
    rec = Engine(snap, wl, policy, EngineSpec(), keep_requests=True).run()  # type: ignore[arg-type]
    assert (rec.status == DONE).all(), "the twin served every request"
    return np.asarray(rec.ttft), policy.seen


def _quantiles(x: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(x, 50)), float(np.percentile(x, 95))


def test_twin_and_box_agree_on_ttft_for_the_same_trace_slice(box: Box):
    model, region, _ = _objects()
    pool = region.spec.pools[0]
    cluster = Cluster.connect(box.kubeconfig, timeout=20)
    try:
        crds = [crd_for(k) for k in KINDS]
        cluster.apply_all(crds)
        cluster.wait_crds_established([d["metadata"]["name"] for d in crds])
        cluster.ensure_namespace(NAMESPACE)
        cluster.apply(next(d for d in sample.box_fleet(FLEET) if d["kind"] == "LLMModel"))
        node = render.render_static_node(REGION, pool, 0)
        cluster.apply(node)
        cluster.apply(
            render.render_static_node_status(node["metadata"]["name"], pool.gpus_per_node),
            subresource="status",
        )
        cluster.apply(render.render_deployment(model, REGION, pool, REPLICAS, NAMESPACE))
        svc = cluster.apply(render.render_service(model, REGION, NAMESPACE))
    finally:
        cluster.close()
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    def backends() -> list[str] | None:
        lst = [x for x in box.state().get("listeners", []) if x["url"] == url]
        have: list[str] = lst[0]["backends"] if lst else []
        return have if len(have) == REPLICAS else None

    wait_for(backends, 90, f"{REPLICAS} emulators behind {url}\n{box.logs()}")

    planned = _planned()
    load = LoadThread(planned, sample.SERVED, base_url=url, timeout_s=120)
    counts: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample_counts() -> None:
        while not stop.is_set():
            if not math.isnan(load.t0):
                healthy = sum(e["healthy"] for e in box.state().get("emulators", []))
                counts.append((time.monotonic() - load.t0, healthy))
            stop.wait(10)

    sampler = threading.Thread(target=sample_counts, daemon=True)
    t = time.monotonic()
    load.start()
    sampler.start()
    load.join(timeout=600)
    stop.set()
    sampler.join(timeout=15)
    assert not load.is_alive() and load.error is None, load.error
    s = summarize(load.outcomes, load.wall)
    assert s.ok == s.sent == len(planned), s.to_json()
    box_ttft = np.array([o.ttft for o in load.outcomes])
    # the box started sending on time: nothing queued at the client
    late = max(o.sent_at - p.at for o, p in zip(load.outcomes, planned, strict=True))

    t_twin = time.monotonic()
    twin_ttft, twin_seen = _twin(planned)
    twin_wall = time.monotonic() - t_twin

    (b50, b95), (w50, w95) = _quantiles(box_ttft), _quantiles(twin_ttft)
    per_request = np.abs(box_ttft - twin_ttft)
    print(
        f"\n{len(planned)} requests of conv [{SLICE[0]:.0f}, {SLICE[0] + SLICE[1]:.0f}) s at "
        f"speedup {SLICE[2]}, tokens x {TOKEN_SCALE}, {REPLICAS} replicas "
        f"(P {FLEET.prefill_tokens_per_second:.0f}, D {FLEET.decode_tokens_per_second:.0f}, "
        f"C {FLEET.max_concurrent_sequences})\n"
        f"  box:  TTFT p50 {b50:.3f}s p95 {b95:.3f}s (replay {load.wall:.1f}s wall, "
        f"latest send {late * 1000:.1f} ms behind plan, test {time.monotonic() - t:.0f}s)\n"
        f"  twin: TTFT p50 {w50:.3f}s p95 {w95:.3f}s ({twin_wall:.2f}s wall)\n"
        f"  ratio box/twin: p50 {b50 / w50:.3f}, p95 {b95 / w95:.3f}; per request |box - twin| "
        f"median {np.median(per_request) * 1000:.1f} ms, p95 "
        f"{np.percentile(per_request, 95) * 1000:.1f} ms\n"
        f"  replicas over time, box (replay s, healthy emulators): {counts}\n"
        f"  replicas over time, twin (s from first request, ready): "
        f"{[(round(t - WARMUP), n) for t, n in twin_seen]}"
    )  # fmt: skip
    assert abs(b50 - w50) <= TOLERANCE * w50, (b50, w50)
    assert abs(b95 - w95) <= TOLERANCE * w95, (b95, w95)
    assert {n for _, n in counts} == {REPLICAS}, counts
    assert [n for t, n in twin_seen if t >= WARMUP] and all(
        n == REPLICAS for t, n in twin_seen if t >= WARMUP
    ), twin_seen


def test_the_twin_alone_meets_its_own_replica_model():
    # unloaded: one request alone has TTFT = prompt / P, as both the twin and the emulator say
    p = _planned()[:1]
    lone = [replace(p[0], at=0.0)]
    ttft, _ = _twin(lone)
    assert ttft[0] == pytest.approx(lone[0].prompt_tokens / FLEET.prefill_tokens_per_second)
