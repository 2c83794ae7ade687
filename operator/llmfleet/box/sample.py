"""The fleet a box's operator plans: small Regions, a tiny LLMModel, one SLATier, one
TenantQuota and a FleetPolicy in apply mode that reads the box's Prometheus.

:func:`box_fleet` (pure) builds the objects from :class:`BoxFleet`; ``python -m
llmfleet.box.sample apply`` applies the CRDs and the objects to a cluster (``hack/fleet.sh
up`` with ``FLEET_OPERATOR=1``), ``print`` writes them as YAML.

What is tuned for a box (and why):

* Regions ``box-east`` and ``box-west`` (75 ms apart), each with one static pool ``gpu`` of
  GPU type ``box-gpu`` (the operator writes its Nodes; kwok makes them Ready), 2 GPUs per
  Node and ``maxNodes`` 4. Pool provisioning and model load times are a few seconds, as on
  the box.
* LLMModel ``tiny`` (served as ``box/tiny``), one GPU per replica, at
  ``prefillTokensPerSecond``/``decodeTokensPerSecond``/``maxConcurrentSequences`` of
  :class:`BoxFleet` (defaults: 1000 / 200 / 8: a request of the Azure conv trace at
  ``token_scale`` 0.1 (115 prompt, 21 output tokens) costs a saturated replica 0.22 s).
* Prometheus through the ``vllm`` query profile (vLLM's series only; the box's Prometheus
  scrapes the emulators): the serving region is the origin and every flow is tier
  :attr:`BoxFleet.tier`. The templates read the **peak 30 s rate since the current step
  began** (``max_over_time(...[$window:5s] offset -$window)``): the default templates give
  the rate of each *completed* step, and ``horizon.stepSeconds`` is at least 300, so a plan
  would see a change of load only after the next step boundary (up to 5 minutes later, plus
  the window). With these the next cycle (``intervalSeconds``, at least 30) sees it.
* ``ingress.parentRefs``: the box's Gateway when :attr:`BoxFleet.gateway` is set (Traefik),
  else none (the routing ConfigMap only).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

API = "llmfleet.dev/v1alpha1"
MODEL = "tiny"
SERVED = "box/tiny"
GPU_TYPE = "box-gpu"
POOL = "gpu"
REGIONS = ("box-east", "box-west")
TENANT = "box-tenant"


def current_step_rate(counter: str, window: str = "30s", resolution: str = "5s") -> str:
    """A ``vllm``-profile demand template: per (model_name, region), the peak ``window`` rate
    of ``counter`` since the step that ends the range began (see the module docstring)."""
    inner = f"sum by (model_name, region) (rate({counter}[{window}]))"
    return f"max_over_time({inner}[$window:{resolution}] offset -$window)"


@dataclass(frozen=True)
class BoxFleet:
    """The knobs of the box's fleet."""

    namespace: str = "llmfleet"
    prometheus_url: str = "http://127.0.0.1:9090"
    regions: tuple[str, ...] = REGIONS
    interval_seconds: int = 30
    prefill_tokens_per_second: float = 1000.0
    decode_tokens_per_second: float = 200.0
    max_concurrent_sequences: int = 8
    load_seconds: float = 5.0
    provisioning_seconds: int = 5
    gpus_per_node: int = 2
    max_nodes: int = 4
    min_replicas_per_region: int = 0
    tier: str = "box-interactive"
    ttft_p95_seconds: float = 2.0
    target_utilization: float = 0.6
    tokens_per_minute: int = 30000
    """The tenant's budget: the demand planned for before Prometheus has any (quota
    fallback), from every region in equal parts: about a third of a replica of the tiny
    model at its peak (the synthetic curve's trough is 30% of it), so the first plan runs
    one, and the load step overloads it."""
    max_data_age_seconds: int = 60
    gateway: tuple[str, str] | None = None
    """(name, namespace) of the Gateway the HTTPRoutes attach to; None: no HTTPRoutes."""


def _region(name: str, others: Sequence[str], f: BoxFleet) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {
            "location": f"box ({name})",
            "cluster": {"mode": "local"},
            "pools": [
                {
                    "name": POOL, "gpuType": GPU_TYPE, "gpusPerNode": f.gpus_per_node,
                    "capacityType": "on-demand", "pricePerNodeHour": 2.0, "minNodes": 0,
                    "maxNodes": f.max_nodes, "provisioningSeconds": f.provisioning_seconds,
                    "provider": {"type": "static"},
                }
            ],
            "latencies": [{"region": o, "rttMs": 75} for o in others],
        },
    }  # fmt: skip


def box_fleet(f: BoxFleet) -> list[dict[str, Any]]:
    """The objects (Regions are cluster-scoped; the others in ``f.namespace``)."""
    ns = f.namespace
    regions = [_region(r, [o for o in f.regions if o != r], f) for r in f.regions]
    model = {
        "apiVersion": API,
        "kind": "LLMModel",
        "metadata": {"name": MODEL, "namespace": ns},
        "spec": {
            "servedModelName": SERVED,
            "runtime": {"port": 8000},
            "profiles": [
                {
                    "gpuType": GPU_TYPE, "gpusPerReplica": 1,
                    "prefillTokensPerSecond": f.prefill_tokens_per_second,
                    "decodeTokensPerSecond": f.decode_tokens_per_second,
                    "maxConcurrentSequences": f.max_concurrent_sequences,
                    "loadSeconds": f.load_seconds,
                }
            ],
            "minReplicasPerRegion": f.min_replicas_per_region,
        },
    }  # fmt: skip
    tier = {
        "apiVersion": API,
        "kind": "SLATier",
        "metadata": {"name": f.tier, "namespace": ns},
        "spec": {
            "type": "interactive",
            "interactive": {"ttftP95Seconds": f.ttft_p95_seconds},
            "priority": 100,
            "spotAllowed": False,
            "maxSpotFraction": 0.0,
            "targetUtilization": f.target_utilization,
        },
    }
    quota = {
        "apiVersion": API,
        "kind": "TenantQuota",
        "metadata": {"name": TENANT, "namespace": ns},
        "spec": {
            "tenantId": TENANT,
            "tier": f.tier,
            "models": [MODEL],
            "budgets": {"tokensPerMinute": f.tokens_per_minute},
            # the requests the box's load generator sends (conv trace, tokens x 0.1): what
            # the quota fallback sizes replicas for
            "application": {"meanInputTokens": 115, "meanOutputTokens": 25},
            "origins": [
                {"region": r, "fraction": round(1.0 / len(f.regions), 6)} for r in f.regions
            ],
        },
    }
    queries = {
        "profile": "vllm",
        "defaultTier": f.tier,
        "promptTokens": current_step_rate("vllm:prompt_tokens_total"),
        "generationTokens": current_step_rate("vllm:generation_tokens_total"),
        "requests": current_step_rate("vllm:request_success_total"),
    }
    policy = {
        "apiVersion": API,
        "kind": "FleetPolicy",
        "metadata": {"name": "box", "namespace": ns},
        "spec": {
            "mode": "apply",
            "intervalSeconds": f.interval_seconds,
            "horizon": {"stepSeconds": 300, "steps": 2},
            "forecast": {"method": "naive", "historySeconds": 3600, "backtestFolds": 1},
            "maxChangesPerCycle": 100,
            "solver": {"timeLimitSeconds": 5, "relativeGap": 0.01},
            "prometheus": {
                "url": f.prometheus_url,
                "timeoutSeconds": 5,
                "maxDataAgeSeconds": f.max_data_age_seconds,
                "queries": queries,
            },
            "ingress": {
                "parentRefs": [{"name": f.gateway[0], "namespace": f.gateway[1]}]
                if f.gateway
                else [],
            },
            "plansToKeep": 5,
        },
    }
    return [*regions, model, tier, quota, policy]


def apply(kubeconfig: Path, f: BoxFleet, timeout: float = 20.0) -> list[str]:
    """The llmfleet CRDs, the namespace and :func:`box_fleet` applied; the objects' names."""
    from llmfleet.api import KINDS
    from llmfleet.api.crdgen import crd_for
    from llmfleet.kube.client import Cluster

    cluster = Cluster.connect(kubeconfig, timeout=timeout)
    try:
        crds = [crd_for(k) for k in KINDS]
        cluster.apply_all(crds)
        cluster.wait_crds_established([d["metadata"]["name"] for d in crds])
        cluster.ensure_namespace(f.namespace)
        done = cluster.apply_all(box_fleet(f))
    finally:
        cluster.close()
    return [f"{d['kind']} {d['metadata']['name']}" for d in done]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmfleet.box.sample", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("action", choices=("apply", "print"))
    ap.add_argument("--kubeconfig", type=Path, help="for apply")
    ap.add_argument("-n", "--namespace", default="llmfleet")
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL")
    ap.add_argument("--interval", type=int, default=30, help="FleetPolicy intervalSeconds")
    ap.add_argument("--gateway", default=None, help="NAMESPACE/NAME of the Gateway (Traefik)")
    args = ap.parse_args(argv)
    gateway = None
    if args.gateway:
        ns, _, name = args.gateway.partition("/")
        if not name:
            ap.error("--gateway is NAMESPACE/NAME")
        gateway = (name, ns)
    f = BoxFleet(
        namespace=args.namespace, prometheus_url=args.prometheus,
        interval_seconds=args.interval, gateway=gateway,
    )  # fmt: skip
    if args.action == "print":
        yaml.safe_dump_all(box_fleet(f), sys.stdout, sort_keys=False)
        return 0
    if args.kubeconfig is None:
        ap.error("apply needs --kubeconfig")
    for line in apply(args.kubeconfig, f):
        print(f"applied {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
