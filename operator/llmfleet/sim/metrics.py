"""What a run measured, and the conservation check.

Per request: arrival, first admission, first token, completion (or rejection with a
reason), retries. Per pool: nodes over time, integrated into GPU-hours and USD (a node is
billed from the moment it is asked for until it is released). Conservation: every request
that arrived is completed, rejected with a reason, or still held somewhere at the end (a
replica queue or batch, the pending list or the deadline queue) — :meth:`Recorder.finish`
raises :class:`ConservationError` otherwise.

Jain's index over backlogged tenants: per 10-minute window, the tenants with a request that
waited more than 1 s for admission in it are backlogged; ``x_u`` = their served tokens / weight;
``J = (sum x)^2 / (n sum x^2)``; the run's index is the mean over windows with n >= 2.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import NodePool

if TYPE_CHECKING:
    from llmfleet.sim.workload import Workload

IN_FLIGHT, DONE, REJECTED = 1, 2, 3


class ConservationError(AssertionError):
    """A request was lost: neither completed, rejected nor held at the end."""


@dataclass
class PoolMeter:
    spot: bool
    gpus_per_node: int
    price: float
    nodes: int = 0
    since: float = 0.0
    node_seconds: float = 0.0


@dataclass
class Recorder:
    wl: Workload
    snap: FleetSnapshot
    pools: Mapping[tuple[str, str], NodePool]
    hourly_usd: list[float] = field(default_factory=list)
    gpu_samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    retry_reasons: Counter[str] = field(default_factory=Counter)
    actions: int = 0
    shortfalls: int = 0
    interruptions: int = 0
    loading_gpu_seconds: float = 0.0
    end: float = 0.0
    held_at_end: int = 0

    def __post_init__(self) -> None:
        n = len(self.wl)
        self.status = np.zeros(n, dtype=np.int8)
        self.admit = np.full(n, np.nan)
        self.ttft = np.full(n, np.nan)
        self.e2e = np.full(n, np.nan)
        self.done_at = np.full(n, np.nan)
        self.retries = np.zeros(n, dtype=np.int32)
        self.deadline = np.full(n, np.inf)
        self.meters = {
            k: PoolMeter(p.capacity_type == "spot", p.gpus_per_node, p.price_per_node_hour)
            for k, p in self.pools.items()
        }
        self._last_sample = -math.inf

    # ---------------------------------------------------------------- request events
    def arrived(self, req: Any) -> None:
        self.status[req.id] = IN_FLIGHT
        self.deadline[req.id] = req.deadline

    def admitted(self, req: Any, now: float) -> None:
        if math.isnan(self.admit[req.id]):
            self.admit[req.id] = now

    def first_token(self, req: Any, now: float) -> None:
        self.ttft[req.id] = now - req.arrival

    def completed(self, req: Any, now: float) -> None:
        self.status[req.id] = DONE
        self.e2e[req.id] = now - req.arrival
        self.done_at[req.id] = now
        self.deadline[req.id] = req.deadline

    def rejected(self, req: Any, reason: str, now: float) -> None:
        self.status[req.id] = REJECTED
        self.reasons[reason] += 1
        self.done_at[req.id] = now
        self.deadline[req.id] = req.deadline

    def retried(self, req: Any, why: str) -> None:
        self.retries[req.id] += 1
        self.retry_reasons[why] += 1

    # ---------------------------------------------------------------- fleet events
    def loaded(self, gpus: int, seconds: float) -> None:
        self.loading_gpu_seconds += gpus * max(seconds, 0.0)

    def scaling_action(self) -> None:
        self.actions += 1

    def capacity_shortfall(self) -> None:
        self.shortfalls += 1

    def spot_interruption(self) -> None:
        self.interruptions += 1

    def node_count(self, region: str, pool: str, n: int, now: float) -> None:
        m = self.meters[(region, pool)]
        self._bill(m, now)
        m.nodes = n

    def _bill(self, m: PoolMeter, now: float) -> None:
        t = m.since
        while t < now:
            h = int(t // 3600)
            seg = min(now, (h + 1) * 3600.0) - t
            while len(self.hourly_usd) <= h:
                self.hourly_usd.append(0.0)
            self.hourly_usd[h] += m.nodes * m.price * seg / 3600.0
            m.node_seconds += m.nodes * seg
            t += seg
        m.since = now

    def sample(self, now: float, nodes: Mapping[tuple[str, str], list[Any]],
               replicas: Mapping[Any, list[Any]]) -> None:
        if now - self._last_sample < 600:
            return
        self._last_sample = now
        self.gpu_samples.append((now, {
            f"{r}/{p}": len(v) * self.meters[(r, p)].gpus_per_node for (r, p), v in nodes.items()
        }))

    # ---------------------------------------------------------------- end
    def finish(self, end: float, holders: Iterable[Any]) -> None:
        self.end = end
        for m in self.meters.values():
            self._bill(m, end)
        held = {r.id for r in holders}
        flying = set(np.nonzero(self.status == IN_FLIGHT)[0].tolist())
        self.held_at_end = len(held)
        if held != flying:
            lost = sorted(flying - held)[:5]
            extra = sorted(held - flying)[:5]
            raise ConservationError(
                f"requests in flight but held nowhere: {lost}; held but not in flight: {extra}"
            )

    # ---------------------------------------------------------------- summaries
    def summary(self) -> dict[str, Any]:
        wl = self.wl
        arrived = self.status > 0
        gpu_h = {"on-demand": 0.0, "spot": 0.0}
        usd = {"on-demand": 0.0, "spot": 0.0}
        for m in self.meters.values():
            k = "spot" if m.spot else "on-demand"
            gpu_h[k] += m.node_seconds * m.gpus_per_node / 3600.0
            usd[k] += m.node_seconds * m.price / 3600.0
        tiers: dict[str, dict[str, float]] = {}
        for ti, name in enumerate(wl.tiers):
            sel = arrived & (wl.tier == ti)
            n = int(sel.sum())
            if n == 0:
                continue
            spec = next(t.spec for t in self.snap.tiers if t.metadata.name == name)
            done = sel & (self.status == DONE)
            ttft = self.ttft[done]
            e2e = self.e2e[done]
            ok = done.copy()
            if spec.interactive is not None:
                it = spec.interactive
                if it.ttft_p95_seconds is not None:
                    ok &= np.nan_to_num(self.ttft, nan=np.inf) <= it.ttft_p95_seconds
                if it.e2e_p95_seconds is not None:
                    ok &= np.nan_to_num(self.e2e, nan=np.inf) <= it.e2e_p95_seconds
            missed = 0
            if spec.deadline is not None:
                late = sel & (self.status != IN_FLIGHT) & ~(self.done_at <= self.deadline)
                late |= sel & (self.status == IN_FLIGHT) & (self.deadline < self.end)
                missed = int(late.sum())
                ok = done & (self.done_at <= self.deadline)
            # requests still in flight and not yet overdue have no outcome yet
            open_ = sel & (self.status == IN_FLIGHT) & (self.deadline >= self.end)
            decided = max(n - int(open_.sum()), 1)
            tiers[name] = {
                "requests": n, "completed": int(done.sum()),
                "rejected": int((sel & (self.status == REJECTED)).sum()),
                "attainment": float((ok & sel).sum() / decided),
                "deadline_misses": missed,
                **_pct("ttft", ttft), **_pct("e2e", e2e),
            }
        return {
            "requests": int(arrived.sum()),
            "completed": int((self.status == DONE).sum()),
            "rejected": int((self.status == REJECTED).sum()),
            "in_flight_end": int((self.status == IN_FLIGHT).sum()),
            "reject_reasons": dict(self.reasons),
            "retried": int((self.retries > 0).sum()),
            "retry_reasons": dict(self.retry_reasons),
            "gpu_hours": gpu_h, "usd": usd,
            "gpu_hours_total": sum(gpu_h.values()), "usd_total": sum(usd.values()),
            "loading_gpu_hours": self.loading_gpu_seconds / 3600.0,
            "scaling_actions": self.actions, "capacity_shortfalls": self.shortfalls,
            "spot_interruptions": self.interruptions,
            "tiers": tiers, "jain": self.jain(),
        }

    def per_tenant(self) -> list[dict[str, Any]]:
        wl = self.wl
        out = []
        for ui, name in enumerate(wl.tenants):
            sel = (self.status == DONE) & (wl.tenant == ui)
            out.append({"tenant": name, "requests": int(((self.status > 0) & (wl.tenant == ui))
                                                         .sum()),
                        "completed": int(sel.sum()),
                        **_pct("ttft", self.ttft[sel]), **_pct("e2e", self.e2e[sel])})
        return out

    def jain(self, window: float = 600.0) -> float:
        wl = self.wl
        done = self.status == DONE
        if not done.any():
            return float("nan")
        weights = {t.spec.tenant_id: t.spec.weight for t in self.snap.tenants}
        w = np.array([weights.get(n, 1.0) for n in wl.tenants])
        win = (self.done_at[done] // window).astype(np.int64)
        ten = wl.tenant[done]
        tok = (wl.prompt[done] + wl.output[done]).astype(np.float64)
        waited = (self.admit[done] - wl.arrival[done]) > 1.0
        nw = int(win.max()) + 1
        served = np.zeros((nw, len(wl.tenants)))
        np.add.at(served, (win, ten), tok)
        back = np.zeros((nw, len(wl.tenants)), dtype=bool)
        back[win[waited], ten[waited]] = True
        vals = []
        for i in range(nw):
            x = served[i, back[i]] / w[back[i]]
            if x.size >= 2 and (x**2).sum() > 0:
                vals.append(x.sum() ** 2 / (x.size * (x**2).sum()))
        return float(np.mean(vals)) if vals else 1.0


def _pct(name: str, v: np.ndarray) -> dict[str, float]:
    if v.size == 0:
        return {f"{name}_p50": float("nan"), f"{name}_p95": float("nan"),
                f"{name}_p99": float("nan")}
    p = np.percentile(v, [50, 95, 99])
    return {f"{name}_p50": float(p[0]), f"{name}_p95": float(p[1]), f"{name}_p99": float(p[2])}
