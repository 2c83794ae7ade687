"""``llmfleet bench controller``: the controller against a real apiserver, figures printed.

Two measurements, each printed beside its target (:data:`RECONCILE_P99_TARGET`,
:data:`ACTUATION_TARGET`) with a pass/miss mark; a benchmark, not a timed test:

1. **Reconcile latency with 1,000 CRs in the cluster.** A fleet of ``--crs`` llmfleet
   objects (3 Regions, 20 LLMModels, the sample SLATiers, the rest TenantQuotas) is created,
   then ``llmfleet operator`` runs as a process. After its first sweep has marked every
   object ``Valid``, ``--updates`` TenantQuotas are changed one at a time; the latency of one
   reconcile is the time from the write returning to the operator's status carrying the new
   ``observedGeneration`` (polled every 5 ms). Target: p99 <= 1 s with 1,000 CRs.
2. **From plan to all writes applied, 3 regions x 20 models.** A FleetPlan spec (two pools
   per region, every model in every pool, routing per tier and origin) is actuated with
   :func:`llmfleet.kube.actuate.actuate` against the cluster, from an empty fleet; then a
   plan that changes a third of the replicas and one node per pool; then the same plan again
   (0 writes). Target: the first plan's writes applied in <= 30 s.

The cluster is the local control plane (:class:`llmfleet.kube.localcp.LocalControlPlane`
on ``hack/bin/llmfleet-controlplane``, started in a temporary directory and stopped at the
end) unless ``--kubeconfig`` names one; everything
lives in a fresh namespace (and three Regions named ``bench-*``), deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from llmfleet.api import API_VERSION, KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.model import LLMModel
from llmfleet.api.plan import (
    FleetPlanSpec,
    ModelReplicas,
    PoolNodes,
    RegionWeight,
    RoutingRule,
    SolverResult,
)
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import Region
from llmfleet.kube.actuate import actuate
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.localcp import ControlPlaneError, LocalControlPlane, binary_path
from llmfleet_bench.targets import Threshold

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "crds" / "samples"
POOLS = ("h100-od", "h100-spot")
TIERS = ("interactive-fast", "batch")

RECONCILE_P99_TARGET = Threshold("reconcile latency p99 with 1,000 CRs", 1.0, "s", fmt="{:.3f}")
"""One reconcile, write to ``observedGeneration``, at the 99th percentile."""
ACTUATION_TARGET = Threshold(
    "3-region 20-model plan -> all writes applied", 30.0, "s", fmt="{:.1f}"
)
"""The first plan, from an empty fleet, actuated against the cluster."""
TARGET_CRS = 1000
TARGET_REGIONS, TARGET_MODELS = 3, 20


def _samples() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for f in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


# --------------------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class BenchFleet:
    namespace: str
    regions: list[Region]
    models: list[LLMModel]
    policy: FleetPolicy


def build_fleet(namespace: str, n_regions: int, n_models: int, prefix: str) -> BenchFleet:
    samples = _samples()
    region_doc = samples[("Region", "us-east")]
    regions = []
    for i in range(n_regions):
        doc = {
            "apiVersion": API_VERSION,
            "kind": "Region",
            "metadata": {"name": f"{prefix}-r{i}"},
            "spec": {
                "location": f"bench region {i}",
                "cluster": {"mode": "local"},
                "pools": [
                    {**p, "maxNodes": 500}
                    for p in region_doc["spec"]["pools"]
                    if p["name"] in POOLS
                ],
            },
        }
        regions.append(Region.from_wire(doc))
    model_doc = samples[("LLMModel", "llama-3-1-8b")]
    models = []
    for i in range(n_models):
        doc = {**model_doc, "metadata": {"name": f"{prefix}-m{i:02d}", "namespace": namespace}}
        doc["spec"] = {**model_doc["spec"], "servedModelName": f"bench/model-{i:02d}"}
        models.append(LLMModel.from_wire(doc))
    pol = dict(samples[("FleetPolicy", "default")])
    pol["metadata"] = {"name": "bench", "namespace": namespace}
    pol["spec"] = {**pol["spec"], "maxChangesPerCycle": 100000}
    pol["spec"]["ingress"] = {**pol["spec"]["ingress"], "parentRefs": [{"name": "llm-gateway"}]}
    return BenchFleet(namespace, regions, models, FleetPolicy.from_wire(pol))


def bench_plan(fleet: BenchFleet, replicas: int, bump_every: int = 0) -> FleetPlanSpec:
    """Every model in both pools of every region with ``replicas`` replicas (one more on
    every ``bump_every``-th Deployment), nodes to fit, routing to every region (own region
    first) per tier and origin."""
    reps = []
    per_pool: dict[tuple[str, str], int] = {}
    k = 0
    for r in fleet.regions:
        for pool in POOLS:
            for m in fleet.models:
                n = replicas + (1 if bump_every and k % bump_every == 0 else 0)
                k += 1
                reps.append(ModelReplicas(model=m.name, region=r.name, pool=pool, replicas=n))
                per_pool[(r.name, pool)] = per_pool.get((r.name, pool), 0) + n
    nodes = [
        PoolNodes(region=reg, pool=pool, gpu_type="H100-80GB",
                  capacity_type="spot" if "spot" in pool else "on-demand",
                  nodes=-(-gpus // 8) + (1 if bump_every else 0))
        for (reg, pool), gpus in sorted(per_pool.items())
    ]  # fmt: skip
    names = [r.name for r in fleet.regions]
    routing = []
    for m in fleet.models:
        for tier in TIERS:
            for origin in names:
                others = [x for x in names if x != origin]
                weights = [RegionWeight(region=origin, fraction=0.6)] + [
                    RegionWeight(region=x, fraction=round(0.4 / len(others), 6)) for x in others
                ]
                routing.append(RoutingRule(model=m.name, tier=tier, origin=origin,
                                           weights=weights))  # fmt: skip
    return FleetPlanSpec(
        policy=fleet.policy.name,
        inputs_digest="sha256:bench",
        made_at=datetime.now(UTC),
        step_seconds=3600,
        steps=1,
        solver=SolverResult(status="Optimal", solve_seconds=0.0),
        cost_per_hour=0.0,
        nodes=nodes,
        replicas=reps,
        routing=routing,
    )


def _gateway_crd() -> dict[str, Any] | None:
    try:
        out = subprocess.run(
            ["bash", str(REPO_ROOT / "hack/tools.sh"), "dir", "gateway-api"],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(out.stdout.strip()) / "gateway.networking.k8s.io_httproutes.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- measurements


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _create_crs(c: Cluster, fleet: BenchFleet, total: int) -> dict[str, int]:
    samples = _samples()
    counts: dict[str, int] = {}

    def put(doc: dict[str, Any]) -> None:
        c.apply(doc)
        counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1

    for r in fleet.regions:
        put(r.to_wire())
    for m in fleet.models:
        put(m.to_wire())
    for (kind, name), doc in samples.items():
        if kind == "SLATier":
            put({**doc, "metadata": {"name": name, "namespace": fleet.namespace}})
    tenant = samples[("TenantQuota", "acme-chat")]
    regions = [r.name for r in fleet.regions]
    i = 0
    while sum(counts.values()) < total:
        doc = {
            **tenant,
            "metadata": {"name": f"tenant-{i:04d}", "namespace": fleet.namespace},
            "spec": {
                **tenant["spec"],
                "tenantId": f"tenant-{i:04d}",
                "models": [fleet.models[i % len(fleet.models)].name],
                "origins": [{"region": regions[i % len(regions)], "fraction": 1.0}],
            },
        }
        put(doc)
        i += 1
    return counts


def _valid_count(c: Cluster, namespace: str, regions: set[str]) -> int:
    n = 0
    for kind in KINDS:
        ns = namespace if kind.info.scope == "Namespaced" else None
        for o in c.list(API_VERSION, kind.info.kind, ns):
            if kind.info.scope == "Cluster" and o["metadata"]["name"] not in regions:
                continue
            conds = (o.get("status") or {}).get("conditions") or []
            if any(x.get("type") == "Valid" for x in conds):
                n += 1
    return n


def measure_reconcile(
    c: Cluster, kubeconfig: Path, fleet: BenchFleet, total: int, updates: int, workdir: Path
) -> None:
    t0 = time.perf_counter()
    counts = _create_crs(c, fleet, total)
    created = time.perf_counter() - t0
    n = sum(counts.values())
    kinds = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"  CRs in the cluster:          {n} ({kinds}), created in {created:.1f} s")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
    log = (workdir / "operator.log").open("wb")
    op = subprocess.Popen(
        [sys.executable, "-m", "llmfleet.cli", "operator", "-n", fleet.namespace,
         "--no-planning", "--recheck-seconds", "3600"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        t0 = time.perf_counter()
        names = {r.name for r in fleet.regions}
        while (valid := _valid_count(c, fleet.namespace, names)) < n:
            if op.poll() is not None:
                raise SystemExit(f"the operator exited; log {workdir / 'operator.log'}")
            if time.perf_counter() - t0 > 1800:
                raise SystemExit(f"only {valid}/{n} objects Valid after 30 min")
            time.sleep(1.0)
        sweep = time.perf_counter() - t0
        print(f"  first sweep:                 {n} objects Valid {sweep:.1f} s after the start")
        lat = []
        for i in range(updates):
            name = f"tenant-{(i * 7) % (counts.get('TenantQuota', 1)):04d}"
            obj = c.get(API_VERSION, "TenantQuota", name, fleet.namespace)
            assert obj is not None
            weight = 1 + (int(obj["spec"].get("weight", 1)) % 50)
            start = time.perf_counter()
            out = c.apply(
                {"apiVersion": API_VERSION, "kind": "TenantQuota",
                 "metadata": {"name": name, "namespace": fleet.namespace},
                 "spec": {**obj["spec"], "weight": weight}}
            )  # fmt: skip
            gen = out["metadata"]["generation"]
            while True:
                got = c.get(API_VERSION, "TenantQuota", name, fleet.namespace) or {}
                if (got.get("status") or {}).get("observedGeneration") == gen:
                    break
                if time.perf_counter() - start > 60:
                    raise SystemExit(f"TenantQuota {name} not reconciled within 60 s")
                time.sleep(0.005)
            lat.append(time.perf_counter() - start)
        print(
            f"  reconcile latency:           {len(lat)} updates one at a time: "
            f"p50 {statistics.median(lat):.3f} s, p90 {_quantile(lat, 0.9):.3f} s, "
            f"p99 {_quantile(lat, 0.99):.3f} s, max {max(lat):.3f} s"
        )
        note = "" if n >= TARGET_CRS else f"only {n} CRs: the target is for {TARGET_CRS:,}"
        print(RECONCILE_P99_TARGET.line(_quantile(lat, 0.99), note))
    finally:
        op.terminate()
        try:
            op.wait(timeout=30)
        except subprocess.TimeoutExpired:
            op.kill()
            op.wait(timeout=10)
        log.close()


def measure_actuation(c: Cluster, fleet: BenchFleet, routes: bool) -> None:
    snap = FleetSnapshot(regions=fleet.regions, models=fleet.models, policies=[fleet.policy])
    policy = fleet.policy
    if not routes:
        policy = policy.model_copy(
            update={"spec": policy.spec.model_copy(
                update={"ingress": policy.spec.ingress.model_copy(update={"parent_refs": []})})}
        )  # fmt: skip
    clusters = {r.name: c for r in fleet.regions}
    first = bench_plan(fleet, replicas=2)
    label = f"{len(fleet.regions)} regions x {len(fleet.models)} models"
    for what, plan in (
        (f"plan -> all writes applied ({label}, from empty)", first),
        ("next plan (+1 replica on 1/3 of them, +1 node per pool)", bench_plan(fleet, 2, 3)),
        ("the same plan again", bench_plan(fleet, 2, 3)),
    ):
        t0 = time.perf_counter()
        res = actuate(clusters, snap, plan, policy, fleet.namespace)
        dt = time.perf_counter() - t0
        if res.errors:
            raise SystemExit(f"actuation failed: {res.errors[:3]}")
        print(f"  {what + ':':<62} {res.changes:4d} writes in {dt:5.1f} s")
        if plan is first:
            size = (len(fleet.regions), len(fleet.models))
            note = (
                "" if size == (TARGET_REGIONS, TARGET_MODELS)
                else f"measured at {label}: the target is for {TARGET_REGIONS} x {TARGET_MODELS}"
            )
            print(ACTUATION_TARGET.line(dt, note))


def _cleanup(c: Cluster, fleet: BenchFleet) -> None:
    try:
        c.delete("v1", "Namespace", fleet.namespace)
        for r in fleet.regions:
            c.delete(API_VERSION, "Region", r.name)
        for n in c.list("v1", "Node", label_selector="app.kubernetes.io/managed-by=llmfleet"):
            labels = n["metadata"].get("labels") or {}
            if labels.get("llmfleet.dev/region", "").startswith("bench-"):
                c.delete("v1", "Node", n["metadata"]["name"])
    except KubeError as err:
        print(f"cleanup: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmfleet bench controller", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--crs", type=int, default=1000, help="llmfleet objects in the cluster")
    ap.add_argument("--updates", type=int, default=200, help="reconciles measured")
    ap.add_argument("--regions", type=int, default=3)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--kubeconfig", help="use this cluster instead of a local control plane")
    ap.add_argument("--skip-reconcile", action="store_true", help="only the actuation figures")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="llmfleet-bench-"))
    try:
        if args.kubeconfig:
            return _run(Path(args.kubeconfig), "the cluster in --kubeconfig", args, workdir)
        binary = binary_path()
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: run `bash hack/controlplane.sh build`")
        t0 = time.perf_counter()
        try:
            cp = LocalControlPlane(workdir / "cp", binary=binary).start(timeout=180)
        except ControlPlaneError as err:
            raise SystemExit(str(err)) from None
        try:
            where = f"a local control plane (ready in {time.perf_counter() - t0:.1f} s)"
            return _run(cp.kubeconfig, where, args, workdir)
        finally:
            cp.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(kubeconfig: Path, where: str, args: argparse.Namespace, workdir: Path) -> int:
    c = Cluster.connect(kubeconfig, timeout=30)
    prefix = f"bench-{uuid.uuid4().hex[:4]}"
    fleet = build_fleet(f"{prefix}-ns", args.regions, args.models, prefix)
    try:
        version = c.version().get("gitVersion", "?")
        print(f"controller benchmark on {where}, Kubernetes {version}, {os.cpu_count()} CPUs")
        docs = [crd_for(k) for k in KINDS]
        gateway = _gateway_crd()
        if gateway is not None:
            docs.append(gateway)
        c.apply_all(docs)
        c.wait_crds_established([d["metadata"]["name"] for d in docs])
        c.ensure_namespace(fleet.namespace)
        measure_actuation(c, fleet, routes=gateway is not None)
        if gateway is None:
            print("  (no Gateway API CRD found: HTTPRoutes not written; run hack/tools.sh crds)")
        if not args.skip_reconcile:
            measure_reconcile(c, kubeconfig, fleet, args.crs, args.updates, workdir)
    finally:
        _cleanup(c, fleet)
        c.close()
    return 0
