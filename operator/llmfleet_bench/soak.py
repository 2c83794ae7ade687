"""``llmfleet bench soak``: the operator through a long run of faults, figures printed.

A reader should be able to trust that no outage stops planning. The benchmark runs the real
operator (``llmfleet operator``, a child process, ``--plan-tick-seconds 1``) for
``--minutes`` against

* a local control plane (:class:`llmfleet.kube.localcp.LocalControlPlane`) holding the
  sample fleet (``crds/samples``: 3 Regions with ``static`` node pools, 3 LLMModels, tiers,
  tenants) and a FleetPolicy in ``mode: apply`` planning every ``intervalSeconds`` = the
  API's minimum (30 s), and
* a real Prometheus (Debian's ``prometheus``) holding vLLM counters for three flows,
  backfilled with ``promtool`` (as the integration tests do) from 4 h before the start to
  past the run's end, so the demand stays fresh for the whole run,

each reached by the operator through a fault-injecting proxy on 127.0.0.1
(:mod:`llmfleet_bench.faultproxy`): the FleetPolicy's ``spec.prometheus.url`` names the
Prometheus proxy, and the operator's kubeconfig names the apiserver proxy, which terminates
TLS with its own CA and speaks TLS (admin client certificate) to the apiserver. The
benchmark itself reads the cluster and Prometheus directly.

**Faults** come one at a time, drawn from a seeded RNG (``--seed``): the kinds in a shuffled
round robin, each with a random duration; after each, the benchmark waits until the fleet
has converged (or :data:`CONVERGE_WAIT` has passed), then a quiet gap of 5-30 s:

=====================  ==============================================================  ==========
fault                  what happens                                                    duration
=====================  ==============================================================  ==========
``apiserver-kill``     SIGKILL of the control plane's supervisor (etcd, apiserver and   5 s-10 min
                       controller-manager die with it); restarted on the same data dir
                       and ports after the outage; the fault ends when it is ready
``prometheus-kill``    SIGKILL of Prometheus; restarted on the same TSDB and port       5 s-3 min
``prometheus-slow``    every query delayed 1-10 s (the policy's timeout is 5 s)         10 s-3 min
``prometheus-drop``    50-100% of the connections closed (RST) without an answer        10 s-3 min
``prometheus-html``    50-100% of the queries answered ``200 text/html``               10 s-3 min
``prometheus-values``  50-100% of the answers with non-numeric sample values            10 s-3 min
``watch-gone``         open watch streams cut, then 50% of the watch requests answered  10 s-3 min
                       410 Gone as the kube-apiserver does (200, then an ``ERROR``
                       event with code 410: kopf lists and watches again)
``write-conflict``     30% of the writes (POST/PUT/PATCH/DELETE) answered 409 Conflict  10 s-3 min
=====================  ==============================================================  ==========

Durations are log-uniform in their range (cut to what is left of the run). A proxy fault
that no request met by its end is held until one does (at most 2 intervals + 30 s more):
a period between two cycles would test nothing. ``--faults`` replaces the random schedule by
a fixed one (``apiserver-kill:20,prometheus-html:20``); the run then goes on quietly to
``--minutes``. It may also name ``watch-gone-http`` (watch requests answered with an HTTP
410 Status, not in the random schedule): with it kopf 1.45's watcher fails
(``APIClientError`` is not retried in ``watching.continuous_watch``), its multitasker fails,
the operator stops serving ``/healthz`` and planning but the process never exits -- a bug
in kopf that the operator's code cannot catch; the kube-apiserver itself sends an expired
watch as an ``ERROR`` event (``watch-gone``), which kopf survives.

**Figures** (printed, and written as JSON to ``--json``):

* cycles run and failed, by reason: each finished cycle writes a new ``nextRunTime`` to the
  FleetPolicy's status (read every second), its ``Planned`` condition says why it failed;
  the Warning Events on the policy and the operator's ``/metrics``
  (``llmfleet_planning_cycle_crashes_total``, ``llmfleet_solver_status``) beside them;
* restarts of the loop: the operator process must never exit (exits counted; an exited
  operator is started again so the run goes on), and its ``/healthz`` (``--liveness``) is
  read every 2 s: a failure is a *false alarm* when the loop was alive around it (a cycle
  less than the probe's own threshold -- 3 intervals + one retry delay, 150 s -- before it
  and another after it), else it is counted as during a real stall;
* after each fault, once converged: the Nodes and Deployments in the cluster against the last
  applied FleetPlan (objects lost: planned but missing; duplicated: beyond the plan, two
  Deployments for one (model, region, pool), or left over from no plan);
* the time to converge after each fault: from its end to the first cycle that started after
  it and applied its plan fully (``Planned=True``, ``Actuated=True``, ``lastAppliedPlan ==
  lastPlan``).

Thresholds (:data:`LOOP_RESTARTS`, :data:`HEALTHZ_FALSE_ALARMS`, :data:`LOST`,
:data:`DUPLICATED`, :data:`NOT_CONVERGED`, :func:`converge_target`) are printed beside the
figures, pass or MISS. The convergence target is 2 planning intervals plus the outage's own
retry delay: after a fault ends the operator needs at most its retry delay to try again --
kopf's API backoff cap (:class:`llmfleet.controller.operator.EndlessBackoffs`, 30 s) for an
apiserver fault, the policy's retry delay (``min(interval, RETRY_SECONDS)`` = 30 s) for a
Prometheus fault -- then one interval may pass before a cycle starts and one more if that
cycle is the one that still meets the tail of the fault: 2 x 30 + 30 = 90 s.

Every request loop is bounded in count and time, all traffic stays on 127.0.0.1, and every
child process (control plane, Prometheus, operator) is killed at the end, on Ctrl-C and on
an exception.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from llmfleet.api import API_VERSION, KINDS
from llmfleet.api.crdgen import crd_for
from llmfleet.api.policy import FleetPolicySpec
from llmfleet.controller.operator import EndlessBackoffs
from llmfleet.controller.planning import RETRY_SECONDS, PlanningSettings
from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.localcp import ControlPlaneError, LocalControlPlane, binary_path
from llmfleet.kube.render import LABEL_MODEL, LABEL_POOL, LABEL_REGION, MANAGED_BY, MANAGER
from llmfleet_bench.faultproxy import Fault, FaultProxy, make_proxy_pki
from llmfleet_bench.targets import Threshold

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "crds" / "samples"
THIRDPARTY = REPO_ROOT / "hack" / "bin" / "thirdparty"
NAMESPACE = "llmfleet"
POLICY = "default"
MANAGED = f"{MANAGED_BY}={MANAGER}"

FLOWS = (
    # model, origin region, tier, prompt tokens/s
    ("llama-3-1-8b", "us-east", "interactive-fast", 20000.0),
    ("llama-3-1-8b", "eu-west", "interactive-normal", 12000.0),
    ("llama-3-3-70b", "us-east", "batch", 6000.0),
)
HISTORY_HOURS = 4
PROM_TIMEOUT_SECONDS = 5

FAULT_KINDS = (
    "apiserver-kill",
    "prometheus-kill",
    "prometheus-slow",
    "prometheus-drop",
    "prometheus-html",
    "prometheus-values",
    "watch-gone",
    "write-conflict",
)
OPT_IN_KINDS = ("watch-gone-http",)
"""Kinds only a fixed schedule (``--faults``) runs: a finding the random schedule would
repeat every round (see the module docstring)."""
DURATIONS = {"apiserver-kill": (5.0, 600.0), "prometheus-kill": (5.0, 180.0)}
"""Seconds, log-uniform; the other kinds draw from :data:`PERIOD`."""
PERIOD = (10.0, 180.0)
QUIET = (5.0, 30.0)
"""Seconds between the convergence after one fault and the next fault."""
CONVERGE_WAIT = 600.0
"""Most seconds waited for convergence after a fault (then it counts as not converged)."""
FIRST_PLAN_WAIT = 180.0
"""Most seconds waited for the first plan to be applied (else the run stops: no baseline)."""
MIN_FAULT_SECONDS = 5.0
"""A fault is not started with less than this left of the run."""

STALL_SECONDS = PlanningSettings().stale_after_intervals * 30 + PlanningSettings().retry_seconds
"""The liveness probe's threshold for a 30 s interval: 3 intervals + one retry delay."""
PROBE_CACHE_SECONDS = 10.0
"""kopf caches probe results this long: a healthz answer may be this old."""

LOOP_RESTARTS = Threshold("planning loop restarts (operator exits)", 0, fmt="{:.0f}")
HEALTHZ_FALSE_ALARMS = Threshold(
    "/healthz failures while cycles still ran (no real stall)", 0, fmt="{:.0f}"
)
LOST = Threshold("objects lost after faults (planned, missing)", 0, fmt="{:.0f}")
DUPLICATED = Threshold("objects duplicated after faults (beyond the plan)", 0, fmt="{:.0f}")
NOT_CONVERGED = Threshold(f"faults not converged within {CONVERGE_WAIT:.0f} s", 0, fmt="{:.0f}")


def retry_delay(kind: str, interval: float) -> float:
    """The operator's own delay before it tries again once ``kind`` is over: kopf's API
    backoff cap for apiserver faults, the policy's retry delay for Prometheus faults."""
    if kind in ("apiserver-kill", "watch-gone", "watch-gone-http", "write-conflict"):
        return EndlessBackoffs().cap
    return min(interval, RETRY_SECONDS)


def converge_target(interval: float) -> Threshold:
    """p95 of the time to converge <= 2 intervals + the outages' retry delay."""
    worst = max(retry_delay(k, interval) for k in FAULT_KINDS)
    return Threshold(
        "time to converge after a fault, p95 (2 intervals + retry delay)",
        2 * interval + worst, "s", fmt="{:.1f}",
    )  # fmt: skip


# --------------------------------------------------------------------------- utilities


def _now() -> float:
    return time.time()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _kill(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class _Stop(Exception):
    """The run is being stopped (Ctrl-C or SIGTERM)."""


# --------------------------------------------------------------------------- Prometheus


def _openmetrics(start: float, end: float, step: float) -> str:
    t0 = start
    lines: list[str] = []
    families: dict[str, list[tuple[str, float]]] = {}
    gauges: dict[str, list[tuple[str, float]]] = {}
    for model, region, tier, tps in FLOWS:
        # demand as the gateway counts it (the default query profile, envoy-ai-gateway)
        lab = (f'gen_ai_request_model="{model}",gen_ai_operation_name="chat",'
               f'region="{region}",tenant_id="acme",tier="{tier}"')
        for name, extra, rate in (
            ("gen_ai_client_token_usage_sum", ',gen_ai_token_type="input"', tps),
            ("gen_ai_client_token_usage_sum", ',gen_ai_token_type="output"', tps / 4),
            ("gen_ai_server_request_duration_seconds_count", "", tps / 1500),
        ):
            families.setdefault(name, []).append((lab + extra, rate))
    for model, region in sorted({(f[0], f[1]) for f in FLOWS}):
        # replica state as vLLM exports it per serving region (the data-age check reads it)
        lab = f'engine="0",model_name="{model}",region="{region}"'
        for name, value in (("vllm:num_requests_running", 3.0),
                            ("vllm:num_requests_waiting", 0.0),
                            ("vllm:kv_cache_usage_perc", 0.3)):
            gauges.setdefault(name, []).append((lab, value))
    n = int((end - start) // step) + 1
    for name in sorted(families):
        lines.append(f"# TYPE {name} unknown")
        for lab, rate in families[name]:
            for i in range(n):
                t = start + i * step
                lines.append(f"{name}{{{lab}}} {rate * (t - t0):.6g} {t:.3f}")
    for name in sorted(gauges):
        lines.append(f"# TYPE {name} gauge")
        for lab, value in gauges[name]:
            for i in range(n):
                t = start + i * step
                lines.append(f"{name}{{{lab}}} {value:.6g} {t:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class SoakPrometheus:
    """``prometheus`` over a backfilled TSDB on a fixed port; killable and restartable."""

    workdir: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backfill(self, start: float, end: float) -> None:
        for tool in ("prometheus", "promtool"):
            if not shutil.which(tool):
                raise SystemExit(f"{tool} is missing: run `bash hack/tools.sh prometheus`")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        om = self.workdir / "series.om"
        om.write_text(_openmetrics(start, end, 60.0))
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        (self.workdir / "prometheus.yml").write_text(
            yaml.safe_dump({"global": {"scrape_interval": "1m", "evaluation_interval": "1m"}})
        )

    def start(self, timeout: float = 60.0) -> None:
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             "--storage.tsdb.retention.time=60d",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited; log {self.workdir / 'prometheus.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as rsp:
                    if rsp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout:.0f} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        _kill(self.proc)
        self.proc = None


# --------------------------------------------------------------------------- the fleet


def _samples() -> list[dict[str, Any]]:
    docs = []
    for f in sorted(SAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def min_interval() -> int:
    """The API's minimum ``intervalSeconds`` (the FleetPolicy type's bound)."""
    for meta in FleetPolicySpec.model_fields["interval_seconds"].metadata:
        ge = getattr(meta, "ge", None)
        if ge is not None:
            return int(ge)
    raise RuntimeError("FleetPolicySpec.interval_seconds has no lower bound")


def policy_doc(prometheus_url: str, interval: int, routes: bool) -> dict[str, Any]:
    doc = copy.deepcopy(next(d for d in _samples() if d["kind"] == "FleetPolicy"))
    doc["metadata"] = {"name": POLICY, "namespace": NAMESPACE}
    doc["spec"].update(
        {
            "mode": "apply",
            "intervalSeconds": interval,
            "maxChangesPerCycle": 1000,
            "horizon": {"stepSeconds": 300, "steps": 6},
            "forecast": {"method": "naive", "historySeconds": 3 * 3600, "backtestFolds": 1},
            "solver": {"timeLimitSeconds": 5, "relativeGap": 0.01},
            "prometheus": {"url": prometheus_url, "timeoutSeconds": PROM_TIMEOUT_SECONDS,
                           "maxDataAgeSeconds": 900},
            "plansToKeep": 5,
        }
    )  # fmt: skip
    if not routes:
        doc["spec"]["ingress"]["parentRefs"] = []
    return doc


def _thirdparty_crds() -> list[dict[str, Any]]:
    out = []
    for rel in (
        "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
        "envoy-gateway/gateway.envoyproxy.io_backendtrafficpolicies.yaml",
    ):
        p = THIRDPARTY / rel
        if p.exists():
            out.append(yaml.safe_load(p.read_text()))
    return out


def install(c: Cluster, prometheus_url: str, interval: int) -> bool:
    """CRDs, the namespace, the sample fleet and the apply-mode FleetPolicy; whether the
    HTTPRoute CRD is there (routes are written)."""
    extra = _thirdparty_crds()
    docs = [crd_for(k) for k in KINDS] + extra
    c.apply_all(docs)
    c.wait_crds_established([d["metadata"]["name"] for d in docs])
    c.ensure_namespace(NAMESPACE)
    scopes = {k.info.kind: k.info.scope for k in KINDS}
    for doc in _samples():
        if doc["kind"] == "FleetPolicy":
            continue
        if scopes.get(doc["kind"]) == "Namespaced":
            doc["metadata"]["namespace"] = NAMESPACE
        c.apply(doc)
    routes = any(d["spec"]["names"]["kind"] == "HTTPRoute" for d in extra)
    c.apply(policy_doc(prometheus_url, interval, routes))
    return routes


def proxy_kubeconfig(source: Path, target: Path, server: str, ca_file: Path) -> None:
    """``source`` with its server and CA replaced by the proxy's."""
    import base64

    doc = yaml.safe_load(source.read_text())
    for cl in doc["clusters"]:
        cl["cluster"]["server"] = server
        cl["cluster"].pop("certificate-authority", None)
        cl["cluster"]["certificate-authority-data"] = base64.b64encode(
            ca_file.read_bytes()
        ).decode()
    target.write_text(yaml.safe_dump(doc))


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class CycleRecord:
    """One finished cycle, as its status patch showed it."""

    seen_at: float
    next_run: str
    last_run: str | None
    planned: str
    planned_reason: str
    actuated: str
    actuated_reason: str
    last_plan: str | None
    last_applied: str | None
    demand_reason: str = ""
    """The ``DemandRead`` condition's reason (``PrometheusData``, ``QuotaFallback``, ...)."""

    @property
    def started_at(self) -> float | None:
        """When the cycle started: ``lastRunTime`` for a plan, else ``nextRunTime`` minus
        the delay (which is 30 s for every outcome at a 30 s interval)."""
        if self.planned == "True":
            return _parse_time(self.last_run)
        nxt = _parse_time(self.next_run)
        return None if nxt is None else nxt - 30.0

    @property
    def converged(self) -> bool:
        return (
            self.planned == "True"
            and self.actuated == "True"
            and bool(self.last_plan)
            and self.last_plan == self.last_applied
        )


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


@dataclass
class Observer:
    """Reads the FleetPolicy's status (1 s), ``/healthz`` (2 s), ``/metrics`` (5 s) and
    the policy's Events (15 s) in a thread, straight from the servers (no proxy)."""

    cluster: Cluster
    healthz_url: str
    metrics_url: str
    cycles: list[CycleRecord] = field(default_factory=list)
    healthz: list[tuple[float, int]] = field(default_factory=list)
    """(time, HTTP status; 0 for no answer)."""
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    """uid -> {type, reason, count, message}."""
    metrics_text: str = ""
    solver_statuses: Counter[str] = field(default_factory=Counter)
    """Scrapes by the solver status then at 1."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soak-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def records(self) -> list[CycleRecord]:
        with self._lock:
            return list(self.cycles)

    def _run(self) -> None:
        t = 0
        while not self._stop.wait(1.0 if t else 0.0):
            self.poll_status()
            if t % 2 == 0:
                self._poll_healthz()
            if t % 5 == 0:
                self._poll_metrics()
            if t % 15 == 0:
                self.poll_events()
            t += 1

    def poll_status(self) -> CycleRecord | None:
        try:
            doc = self.cluster.get(API_VERSION, "FleetPolicy", POLICY, NAMESPACE)
        except KubeError:
            return None
        st = (doc or {}).get("status") or {}
        nxt = st.get("nextRunTime")
        if not nxt:
            return None
        planned, actuated = _cond(st, "Planned"), _cond(st, "Actuated")
        rec = CycleRecord(
            _now(), nxt, st.get("lastRunTime"), str(planned.get("status", "")),
            str(planned.get("reason", "")), str(actuated.get("status", "")),
            str(actuated.get("reason", "")), st.get("lastPlan"), st.get("lastAppliedPlan"),
            str(_cond(st, "DemandRead").get("reason", "")),
        )  # fmt: skip
        with self._lock:
            if not self.cycles or self.cycles[-1].next_run != nxt:
                self.cycles.append(rec)  # one status patch per cycle: a new nextRunTime
        return rec

    def _poll_healthz(self) -> None:
        code = 0
        try:
            with urllib.request.urlopen(self.healthz_url, timeout=3) as rsp:
                code = rsp.status
        except urllib.error.HTTPError as err:
            code = err.code
        except OSError:
            code = 0
        with self._lock:
            self.healthz.append((_now(), code))

    def _poll_metrics(self) -> None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=3) as rsp:
                text = rsp.read().decode()
        except OSError:
            return
        with self._lock:
            self.metrics_text = text
            for line in text.splitlines():
                if line.startswith("llmfleet_solver_status{") and line.endswith(" 1.0"):
                    self.solver_statuses[line.split('status="')[1].split('"')[0]] += 1

    def poll_events(self) -> None:
        try:
            items = self.cluster.list("v1", "Event", NAMESPACE)
        except KubeError:
            return
        with self._lock:
            for e in items:
                inv = e.get("involvedObject") or {}
                if inv.get("kind") != "FleetPolicy":
                    continue
                self.events[e["metadata"]["uid"]] = {
                    "type": e.get("type"), "reason": e.get("reason"),
                    "count": int(e.get("count") or 1), "message": e.get("message", "")[:300],
                }  # fmt: skip

    def crashes(self) -> float | None:
        with self._lock:
            text = self.metrics_text
        for line in text.splitlines():
            if line.startswith("llmfleet_planning_cycle_crashes_total "):
                return float(line.split()[-1])
        return None


# --------------------------------------------------------------------------- fleet checks


@dataclass
class FleetCheck:
    """The cluster's Nodes and Deployments against one applied FleetPlan."""

    plan: str
    lost: int
    duplicated: int
    drift: int
    """Deployments whose replicas differ from the plan (neither lost nor duplicated)."""
    details: list[str]


def check_fleet(c: Cluster, plan_name: str) -> FleetCheck:
    doc = c.get(API_VERSION, "FleetPlan", plan_name, NAMESPACE)
    if doc is None:
        return FleetCheck(plan_name, 0, 0, 0, [f"FleetPlan {plan_name} is gone"])
    spec = doc["spec"]
    want_nodes: Counter[tuple[str, str]] = Counter()
    for n in spec.get("nodes") or []:
        want_nodes[(n["region"], n["pool"])] += int(n["nodes"])
    want_reps = {(r["model"], r["region"], r["pool"]): int(r["replicas"])
                 for r in spec.get("replicas") or []}  # fmt: skip
    got_nodes: Counter[tuple[str, str]] = Counter()
    for n in c.list("v1", "Node", label_selector=MANAGED):
        lab = n["metadata"].get("labels") or {}
        got_nodes[(lab.get(LABEL_REGION, "?"), lab.get(LABEL_POOL, "?"))] += 1
    got_deps: dict[tuple[str, str, str], list[int]] = {}
    for d in c.list("apps/v1", "Deployment", NAMESPACE, label_selector=MANAGED):
        lab = d["metadata"].get("labels") or {}
        key = (lab.get(LABEL_MODEL, "?"), lab.get(LABEL_REGION, "?"), lab.get(LABEL_POOL, "?"))
        got_deps.setdefault(key, []).append(int((d.get("spec") or {}).get("replicas") or 0))
    lost = dup = drift = 0
    details: list[str] = []
    for pool in sorted(set(want_nodes) | set(got_nodes)):
        w, g = want_nodes.get(pool, 0), got_nodes.get(pool, 0)
        if g < w:
            lost += w - g
            details.append(f"Nodes {pool}: {g} of {w}")
        elif g > w:
            dup += g - w
            details.append(f"Nodes {pool}: {g}, plan {w}")
    for key in sorted(set(want_reps) | set(got_deps)):
        w = want_reps.get(key, 0)
        got = got_deps.get(key, [])
        if len(got) > 1:
            dup += len(got) - 1
            details.append(f"Deployments {key}: {len(got)} objects")
        if w > 0 and not got:
            lost += 1
            details.append(f"Deployment {key}: missing (plan {w} replicas)")
        elif got and key not in want_reps:
            if any(got):
                dup += 1
                details.append(f"Deployment {key}: not in the plan ({got[0]} replicas)")
        elif got and got[0] != w:
            drift += 1
            details.append(f"Deployment {key}: {got[0]} replicas, plan {w}")
    return FleetCheck(plan_name, lost, dup, drift, details)


# --------------------------------------------------------------------------- faults


@dataclass
class FaultRun:
    """One fault: what, when (wall clock), and what followed."""

    kind: str
    planned_seconds: float
    start: float = 0.0
    end: float = 0.0
    detail: str = ""
    converged_after: float | None = None
    converge_target: float = 0.0
    check: FleetCheck | None = None
    hits: int | None = None
    """Requests that met the fault (proxy faults)."""


def parse_faults(text: str) -> list[tuple[str, float]]:
    out = []
    for part in text.split(","):
        kind, _, secs = part.strip().partition(":")
        if kind not in FAULT_KINDS:
            raise argparse.ArgumentTypeError(
                f"fault {kind!r}: expected one of {', '.join(FAULT_KINDS)}"
            )
        try:
            seconds = float(secs)
        except ValueError:
            raise argparse.ArgumentTypeError(f"fault {part!r}: expected KIND:SECONDS") from None
        if not 1 <= seconds <= 3600:
            raise argparse.ArgumentTypeError(f"fault {part!r}: seconds must be in 1..3600")
        out.append((kind, seconds))
    return out


def random_schedule(rng: random.Random) -> Iterator[tuple[str, float]]:
    """Kinds in a shuffled round robin, durations log-uniform in their ranges."""
    while True:
        kinds = list(FAULT_KINDS)
        rng.shuffle(kinds)
        for kind in kinds:
            lo, hi = DURATIONS.get(kind, PERIOD)
            yield kind, math.exp(rng.uniform(math.log(lo), math.log(hi)))


@dataclass
class Soak:
    """The running parts and the run's state."""

    cp: LocalControlPlane
    cluster: Cluster
    prom: SoakPrometheus
    prom_proxy: FaultProxy
    api_proxy: FaultProxy
    observer: Observer
    operator: subprocess.Popen[bytes]
    operator_log: Path
    interval: float
    rng: random.Random
    stop_flag: threading.Event
    faults: list[FaultRun] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    """Every exit of the operator process (each one restarted it: a loop restart)."""

    def sleep(self, seconds: float) -> None:
        """Sleep, watching the operator; raises :class:`_Stop` when asked to stop."""
        deadline = time.monotonic() + seconds
        while True:
            self.watch_operator()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.stop_flag.wait(min(left, 0.5)):
                raise _Stop

    def watch_operator(self) -> None:
        code = self.operator.poll()
        if code is None:
            return
        self.restarts.append(f"{datetime.now(UTC):%H:%M:%S} exit code {code}")
        print(f"  !! the operator exited (code {code}); restarting it; log {self.operator_log}",
              flush=True)  # fmt: skip
        self.operator = start_operator(self.operator.args, self.operator_log)  # type: ignore[arg-type]

    # ------------------------------------------------------------ one fault

    def inject(self, kind: str, seconds: float) -> FaultRun:
        run = FaultRun(kind, seconds, start=_now())
        rng = self.rng
        if kind == "apiserver-kill":
            self.cp.kill()
            self.sleep(seconds)
            self._restart_control_plane()
        elif kind == "prometheus-kill":
            self.prom.kill()
            self.sleep(seconds)
            self.prom.start()
        else:
            proxy, fault = self._proxy_fault(kind, rng)
            run.detail = f"{fault.fraction:.0%} of requests" + (
                f", {fault.delay_seconds:.1f} s delay" if fault.kind == "delay" else ""
            )
            before = proxy.faulted()
            proxy.set_fault(fault)
            try:
                if fault.kind in ("gone", "gone-http"):
                    run.detail += f", {proxy.cut_watches()} watches cut at the start"
                self.sleep(seconds)
                # a period no request met tests nothing: hold it until one does (bounded)
                limit = time.monotonic() + 2 * self.interval + 30
                while proxy.faulted() == before and time.monotonic() < limit:
                    self.sleep(1.0)
            finally:
                proxy.set_fault(None)
            run.hits = proxy.faulted() - before
        run.end = _now()
        return run

    def _proxy_fault(self, kind: str, rng: random.Random) -> tuple[FaultProxy, Fault]:
        if kind == "prometheus-slow":
            return self.prom_proxy, Fault("delay", 1.0, rng.uniform(1.0, 2 * PROM_TIMEOUT_SECONDS))
        if kind == "prometheus-drop":
            return self.prom_proxy, Fault("drop", rng.uniform(0.5, 1.0))
        if kind == "prometheus-html":
            return self.prom_proxy, Fault("html", rng.uniform(0.5, 1.0))
        if kind == "prometheus-values":
            return self.prom_proxy, Fault("values", rng.uniform(0.5, 1.0))
        if kind == "watch-gone":
            return self.api_proxy, Fault("gone", 0.5)
        if kind == "watch-gone-http":
            return self.api_proxy, Fault("gone-http", 0.5)
        if kind == "write-conflict":
            return self.api_proxy, Fault("conflict", 0.3)
        raise ValueError(f"unknown fault {kind!r}")

    def _restart_control_plane(self) -> None:
        last: Exception | None = None
        for _ in range(10):  # its ports may take a moment to be free after the kill
            try:
                self.cp.start(timeout=180)
                return
            except ControlPlaneError as err:
                last = err
                self.sleep(2.0)
        raise RuntimeError(f"the control plane did not come back: {last}")

    # ------------------------------------------------------------ after a fault

    def wait_converged(self, run: FaultRun, deadline: float) -> None:
        """Wait for the first cycle that started after ``run`` ended and applied its plan
        fully; then compare the fleet with that plan."""
        run.converge_target = 2 * self.interval + retry_delay(run.kind, self.interval)
        limit = min(deadline, time.monotonic() + CONVERGE_WAIT)
        while time.monotonic() < limit:
            self.sleep(1.0)
            for rec in self.observer.records():
                started = rec.started_at
                if rec.converged and started is not None and started >= math.floor(run.end) - 1:
                    run.converged_after = max(0.0, rec.seen_at - run.end)
                    run.check = self._check(rec)
                    return

    def _check(self, rec: CycleRecord) -> FleetCheck | None:
        """The fleet against the plan ``rec`` applied, read while no other cycle lands."""
        for _ in range(5):
            try:
                check = check_fleet(self.cluster, str(rec.last_applied))
                after = self.observer.poll_status()
            except KubeError:
                self.sleep(2.0)
                continue
            if after is not None and after.last_applied == rec.last_applied:
                return check
            rec = after or rec
        return None


def start_operator(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    try:
        return subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    finally:
        fh.close()


# --------------------------------------------------------------------------- the report


def _log_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if not line.startswith("{"):
                if line:
                    yield {"message": line, "severity": "raw"}
                continue
            try:
                yield json.loads(line)
            except ValueError:
                yield {"message": line, "severity": "raw"}


def log_summary(path: Path) -> dict[str, Any]:
    """What the operator's log says about its loop: failed cycles by reason, kopf errors."""
    no_plan: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    tracebacks = 0
    crashed = 0
    samples: list[str] = []
    for d in _log_lines(path):
        msg = str(d.get("message", ""))
        sev = str(d.get("severity") or d.get("levelname") or d.get("level") or "").lower()
        if msg.startswith("no plan ("):
            no_plan[msg[len("no plan (") :].split(")", maxsplit=1)[0]] += 1
        if "Traceback" in msg or d.get("exc_info") or d.get("exception"):
            tracebacks += 1
        if msg.startswith("planning cycle crashed"):
            crashed += 1
        if sev in ("error", "critical"):
            key = msg.split(":", maxsplit=1)[0][:90]
            errors[key] += 1
            if len(samples) < 8 and errors[key] == 1:
                samples.append(msg[:400])
    return {
        "failed_cycles_by_reason": dict(no_plan),
        "cycle_crashes": crashed,
        "tracebacks": tracebacks,
        "errors_by_message": dict(errors.most_common(15)),
        "error_samples": samples,
    }


def healthz_summary(
    healthz: list[tuple[float, int]], records: list[CycleRecord], finishes: list[float]
) -> dict[str, Any]:
    """Failures of ``/healthz`` from the first cycle on: a *false alarm* when the loop was
    alive around it (a cycle had finished -- its status seen, or its failure logged -- less
    than :data:`STALL_SECONDS` (less kopf's probe cache) before, and another one finished
    after it), else during a real stall (or after the loop's last cycle: it stopped)."""
    # a cycle has finished by the time its status is seen (the probe counts finished ones)
    marks = sorted([r.seen_at for r in records] + finishes)
    startup = [h for h in healthz if not marks or h[0] < marks[0]]
    healthz = [h for h in healthz if marks and h[0] >= marks[0]]
    bad = [(t, code) for t, code in healthz if code != 200]
    false_alarms: list[str] = []
    explained = after_last = 0
    for t, code in bad:
        before = [s for s in marks if s <= t]
        last = before[-1] if before else None
        if not any(s > t for s in marks):
            after_last += 1
        elif last is not None and t - last < STALL_SECONDS - PROBE_CACHE_SECONDS:
            false_alarms.append(
                f"{datetime.fromtimestamp(t, UTC):%H:%M:%S} HTTP {code or 'no answer'}, "
                f"{t - last:.0f} s after a cycle"
            )
        else:
            explained += 1
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    return {
        "startup_probes": len(startup),
        "probes": len(healthz),
        "ok": sum(1 for _t, c in healthz if c == 200),
        "failed": len(bad),
        "failed_during_real_stall": explained,
        "failed_after_last_cycle": after_last,
        "false_alarms": len(false_alarms),
        "longest_gap_between_cycles_s": round(max(gaps), 1) if gaps else None,
        "false_alarm_samples": false_alarms[:10],
    }


def log_finishes(path: Path) -> list[float]:
    """Times the operator logged the end of a failed cycle (``no plan (...)``)."""
    out = []
    for d in _log_lines(path):
        if str(d.get("message", "")).startswith("no plan ("):
            t = _parse_time(str(d.get("timestamp") or d.get("time") or ""))
            if t is not None:
                out.append(t)
    return out


def build_report(
    s: Soak, minutes: float, started: float, seed: int, schedule: str
) -> dict[str, Any]:
    records = s.observer.records()
    failed = Counter(r.planned_reason for r in records if r.planned != "True")
    warnings: Counter[str] = Counter()
    for e in s.observer.events.values():
        if e["type"] == "Warning":
            warnings[str(e["reason"])] += int(e["count"])
    logs = log_summary(s.operator_log)
    converge = [f.converged_after for f in s.faults if f.converged_after is not None]
    checks = [f.check for f in s.faults if f.check is not None]
    return {
        "minutes": minutes,
        "wall_seconds": round(_now() - started, 1),
        "seed": seed,
        "schedule": schedule,
        "interval_seconds": s.interval,
        "cycles": {
            "run": len(records),
            "planned": sum(1 for r in records if r.planned == "True"),
            "converged": sum(1 for r in records if r.converged),
            "failed": sum(failed.values()),
            "failed_by_reason": dict(failed.most_common()),
            "demand_read_by_reason": dict(Counter(r.demand_reason for r in records).most_common()),
            "warning_events_by_reason": dict(warnings.most_common()),
            "failed_in_log_by_reason": logs["failed_cycles_by_reason"],
        },
        "metrics": {
            "llmfleet_planning_cycle_crashes_total": s.observer.crashes(),
            "llmfleet_solver_status_scrapes": dict(s.observer.solver_statuses),
        },
        "loop": {
            "operator_exits": len(s.restarts),
            "exits": s.restarts,
            "healthz": healthz_summary(s.observer.healthz, records, log_finishes(s.operator_log)),
        },
        "operator_log": {k: v for k, v in logs.items() if k != "failed_cycles_by_reason"},
        "proxies": {"prometheus": dict(s.prom_proxy.counts), "apiserver": dict(s.api_proxy.counts)},
        "faults": [
            {
                "kind": f.kind,
                "seconds": round(f.end - f.start, 1),
                "detail": f.detail,
                "requests_faulted": f.hits,
                "start": datetime.fromtimestamp(f.start, UTC).strftime("%H:%M:%S"),
                "converged_after_s": None
                if f.converged_after is None
                else round(f.converged_after, 1),
                "target_s": f.converge_target,
                "lost": None if f.check is None else f.check.lost,
                "duplicated": None if f.check is None else f.check.duplicated,
                "drift": None if f.check is None else f.check.drift,
                "check_plan": None if f.check is None else f.check.plan,
                "check_details": [] if f.check is None else f.check.details[:10],
            }
            for f in s.faults
        ],
        "totals": {
            "faults": len(s.faults),
            "converged": len(converge),
            "not_converged": len(s.faults) - len(converge),
            "unchecked": len(s.faults) - len(checks),
            "lost": sum(c.lost for c in checks),
            "duplicated": sum(c.duplicated for c in checks),
            "drift": sum(c.drift for c in checks),
            "converge_p50_s": round(statistics.median(converge), 1) if converge else None,
            "converge_p95_s": round(_quantile(converge, 0.95), 1) if converge else None,
            "converge_max_s": round(max(converge), 1) if converge else None,
        },
    }


def print_report(r: dict[str, Any]) -> bool:
    """Print the report; whether every threshold passed."""
    c, t, loop = r["cycles"], r["totals"], r["loop"]
    hz = loop["healthz"]
    print()
    print(f"soak: {r['minutes']:g} min planned, {r['wall_seconds'] / 60:.1f} min wall, seed "
          f"{r['seed']}, FleetPolicy interval {r['interval_seconds']:.0f} s ({r['schedule']})")  # fmt: skip
    print(f"  cycles run:         {c['run']} ({c['planned']} planned, {c['converged']} fully "
          f"applied), {c['failed']} failed")  # fmt: skip
    for reason, n in c["failed_by_reason"].items():
        print(f"    failed {reason + ':':<28} {n:4d} cycles (status)")
    print(f"    DemandRead by reason (status):     {c['demand_read_by_reason']}")
    print(f"    operator log, 'no plan' by reason: {c['failed_in_log_by_reason'] or '{}'}")
    print(f"    Warning Events on the policy:      {c['warning_events_by_reason'] or '{}'}")
    mt = r["metrics"]
    print(
        f"    /metrics: cycle crashes {mt['llmfleet_planning_cycle_crashes_total']}, "
        f"solver status (scrapes) {mt['llmfleet_solver_status_scrapes']}"
    )
    lg = r["operator_log"]
    print(
        f"  operator log: {lg['tracebacks']} tracebacks, {lg['cycle_crashes']} crashed cycles, "
        f"errors {sum(lg['errors_by_message'].values())}"
    )
    for msg, n in list(lg["errors_by_message"].items())[:6]:
        print(f"    {n:5d} x {msg}")
    print(f"  loop: operator exits {loop['operator_exits']}; /healthz {hz['ok']}/{hz['probes']} "
          f"OK, {hz['failed']} failed ({hz['failed_during_real_stall']} during a real stall of "
          f">= {STALL_SECONDS:.0f} s, {hz['failed_after_last_cycle']} after the last cycle, "
          f"{hz['false_alarms']} false alarms); longest gap between cycles "
          f"{hz['longest_gap_between_cycles_s']} s")  # fmt: skip
    for line in hz["false_alarm_samples"][:5]:
        print(f"    false alarm: {line}")
    print(
        f"  proxies: prometheus {r['proxies']['prometheus']}, apiserver {r['proxies']['apiserver']}"
    )
    print("  faults:")
    print(f"    {'start':8}  {'fault':18} {'secs':>6}  {'converged':>9}  {'target':>6}  "
          f"{'lost':>4}  {'dup':>4}  {'drift':>5}  detail")  # fmt: skip
    for f in r["faults"]:
        conv = "-" if f["converged_after_s"] is None else f"{f['converged_after_s']:.1f} s"
        cells = [("-" if f[k] is None else str(f[k])) for k in ("lost", "duplicated", "drift")]
        print(f"    {f['start']:8}  {f['kind']:18} {f['seconds']:6.1f}  {conv:>9}  "
              f"{f['target_s']:5.0f}s  {cells[0]:>4}  {cells[1]:>4}  {cells[2]:>5}  {f['detail']}")  # fmt: skip
    print(f"  converge: p50 {t['converge_p50_s']} s, p95 {t['converge_p95_s']} s, max "
          f"{t['converge_max_s']} s over {t['converged']} of {t['faults']} faults")  # fmt: skip
    target = converge_target(r["interval_seconds"])
    lines = [
        (LOOP_RESTARTS, float(loop["operator_exits"]), ""),
        (HEALTHZ_FALSE_ALARMS, float(hz["false_alarms"]), ""),
        (LOST, float(t["lost"]), f"{t['unchecked']} faults unchecked" if t["unchecked"] else ""),
        (DUPLICATED, float(t["duplicated"]), ""),
        (NOT_CONVERGED, float(t["not_converged"]), ""),
        (target, t["converge_p95_s"], "kopf backoff cap 30 s / policy retry 30 s"),
    ]
    ok = True
    for th, value, note in lines:
        print(th.line(value, note))
        ok = ok and th.passed(value)
    if not r["faults"]:
        print("  (no fault ran: the run was too short)")
        ok = False
    return ok


# --------------------------------------------------------------------------- main


@contextmanager
def _signals_stop(flag: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``flag`` (the run then stops in order and kills its children)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        print(f"\nsoak: signal {signum}: stopping", file=sys.stderr, flush=True)
        flag.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmfleet bench soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the run (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    ap.add_argument("--faults", type=parse_faults, default=None,
                    help="a fixed schedule instead of the random one: KIND:SECONDS,...")  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, help="write the report here as JSON")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep logs and data here (default: a temporary directory, removed)")  # fmt: skip
    args = ap.parse_args(argv)
    if not 0.5 <= args.minutes <= 24 * 60:
        ap.error("--minutes must be in 0.5..1440")
    binary = binary_path()
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run `bash hack/controlplane.sh build`")
    keep = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="llmfleet-soak-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stop_flag = threading.Event()
    try:
        with _signals_stop(stop_flag):
            report = run(args, workdir, stop_flag)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if report is None:
        return 130
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"  report: {args.json}")
    ok = print_report(report)
    return 0 if ok else 1


def run(
    args: argparse.Namespace, workdir: Path, stop_flag: threading.Event
) -> dict[str, Any] | None:
    interval = float(min_interval())
    rng = random.Random(args.seed)
    started = _now()
    run_seconds = args.minutes * 60.0
    with ExitStack() as stack:
        print(f"soak: workdir {workdir}", flush=True)
        cp = LocalControlPlane(workdir / "cp", binary=binary_path())
        stack.callback(cp.kill)  # a crash loses nothing here: the data dir is thrown away
        cp.start(timeout=180)
        cluster = Cluster.connect(cp.kubeconfig, timeout=5)
        stack.callback(cluster.close)

        prom = SoakPrometheus(workdir / "prometheus")
        now = _now()
        prom.backfill(now - HISTORY_HOURS * 3600, now + run_seconds + CONVERGE_WAIT + 3600)
        stack.callback(prom.kill)
        prom.start()

        pki = make_proxy_pki(workdir / "proxy-pki")
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(pki.cert, pki.key)
        upstream_tls = ssl.create_default_context(cafile=str(cp.ca_file))
        upstream_tls.load_cert_chain(
            cp.workdir / "pki" / "admin.crt", cp.workdir / "pki" / "admin.key"
        )
        api_proxy = FaultProxy("apiserver", cp.port, server_tls=server_tls,
                               upstream_tls=upstream_tls, seed=args.seed + 1)  # fmt: skip
        stack.callback(api_proxy.stop)
        prom_proxy = FaultProxy("prometheus", prom.port, seed=args.seed + 2)
        stack.callback(prom_proxy.stop)
        kubeconfig = workdir / "operator.kubeconfig"
        proxy_kubeconfig(cp.kubeconfig, kubeconfig, api_proxy.url, pki.ca_cert)

        routes = install(cluster, prom_proxy.url, int(interval))
        metrics_port, health_port = _free_port(), _free_port()
        op_args = [
            sys.executable, "-m", "llmfleet.cli", "operator", "--kubeconfig", str(kubeconfig),
            "-n", NAMESPACE, "--plan-tick-seconds", "1", "--metrics-port", str(metrics_port),
            "--liveness", f"http://127.0.0.1:{health_port}/healthz", "--log-format", "json",
        ]  # fmt: skip
        log = workdir / "operator.log"
        operator = start_operator(op_args, log)
        soak = Soak(cp, cluster, prom, prom_proxy, api_proxy,
                    Observer(cluster, f"http://127.0.0.1:{health_port}/healthz",
                             f"http://127.0.0.1:{metrics_port}/metrics"),
                    operator, log, interval, rng, stop_flag)  # fmt: skip
        stack.callback(lambda: _kill(soak.operator))
        stack.callback(soak.observer.stop)
        soak.observer.start()
        print(f"soak: operator pid {operator.pid} via the apiserver proxy {api_proxy.url}, "
              f"Prometheus via {prom_proxy.url}; routes {'on' if routes else 'off'}; "
              f"{args.minutes:g} min", flush=True)  # fmt: skip
        try:
            _soak(soak, args, started, run_seconds)
        except _Stop:
            print("soak: stopped early; the report covers what ran", flush=True)
        schedule = (
            "fixed: " + ",".join(f"{k}:{s:g}" for k, s in args.faults) if args.faults else "random"
        )
        soak.observer.poll_events()
        if soak.operator.poll() is not None:
            soak.watch_operator()
        report = build_report(soak, args.minutes, started, args.seed, schedule)
        report["workdir"] = str(workdir)
        report["samples"] = {
            "healthz": [[round(t, 1), code] for t, code in soak.observer.healthz],
            "cycles": [
                {"seen_at": round(c.seen_at, 1), "next_run": c.next_run, "last_run": c.last_run,
                 "planned": c.planned_reason or c.planned, "actuated": c.actuated_reason,
                 "demand": c.demand_reason, "converged": c.converged}
                for c in soak.observer.records()
            ],
        }  # fmt: skip
        report["routes"] = routes
        return report


def _soak(soak: Soak, args: argparse.Namespace, started: float, run_seconds: float) -> None:
    end_at = time.monotonic() + run_seconds
    hard_end = end_at + CONVERGE_WAIT
    first = FaultRun("start", 0.0, start=started, end=_now())
    soak.wait_converged(first, time.monotonic() + FIRST_PLAN_WAIT)
    if first.converged_after is None:
        raise RuntimeError(f"the first plan was not applied within {CONVERGE_WAIT:.0f} s; "
                           f"log {soak.operator_log}")  # fmt: skip
    print(f"soak: first plan applied {_now() - started:.0f} s after the start "
          f"({first.check.lost if first.check else '?'} lost, "
          f"{first.check.duplicated if first.check else '?'} duplicated)", flush=True)  # fmt: skip
    schedule: Iterator[tuple[str, float]] = (
        iter(args.faults) if args.faults else random_schedule(soak.rng)
    )
    for kind, drawn in schedule:
        left = end_at - time.monotonic()
        if left < MIN_FAULT_SECONDS:
            break
        seconds = min(drawn, left)
        print(f"soak: {datetime.now(UTC):%H:%M:%S} {kind} for {seconds:.0f} s", flush=True)
        run = soak.inject(kind, seconds)
        soak.faults.append(run)
        soak.wait_converged(run, hard_end)
        conv = (
            "NOT converged"
            if run.converged_after is None
            else f"converged after {run.converged_after:.1f} s"
        )
        chk = run.check
        print(f"soak:   {conv}" + (f"; {chk.lost} lost, {chk.duplicated} duplicated, {chk.drift} drift"
                                   if chk else ""), flush=True)  # fmt: skip
        if time.monotonic() >= end_at:
            break
        soak.sleep(min(soak.rng.uniform(*QUIET), max(0.0, end_at - time.monotonic())))
    soak.sleep(max(0.0, end_at - time.monotonic()))  # a fixed schedule ended early: run on
