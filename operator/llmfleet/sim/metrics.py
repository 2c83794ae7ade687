"""What a run measured, and the conservation check — in memory that does not grow with the
number of requests.

Every request event updates running aggregates, never a per-request table: per tier and per
tenant, counts and log-spaced latency histograms (:class:`LogHistogram`, 100 bins a decade
from 1 ms to 1e5 s: percentiles within 1.2 %); per 10-minute window and tenant, served tokens
and a backlogged flag (for Jain's index); per pool, nodes over time integrated into GPU-hours
and USD (a node is billed from the moment it is asked for until it is released). The only
per-request state is the set of ids in flight, bounded by what the fleet holds at once.
``keep_requests=True`` also keeps per-request arrays (``status``, ``admit``, ``ttft``,
``e2e``, ``done_at``) for tests that check single requests by hand.

Conservation: every request that arrived is completed, rejected with a reason, or still held
somewhere at the end (a replica queue or batch, the pending list or the deadline queue) —
:meth:`Recorder.finish` raises :class:`ConservationError` otherwise.

SLO attainment of a tier: the share of its decided requests (completed or rejected, or still
in flight past their deadline) that completed within every latency target of the tier
(interactive: TTFT and end-to-end p95 targets) or by their deadline (deadline tiers).

SLOs as an SRE reads them: per tier and hour (of arrival) the same counts, so the *share of
hours in which the tier's percentile target holds* (an hour holds when at least
``SLO_PERCENTILE`` of its decided requests met every target; rejected requests are misses);
p99 and p99.9 TTFT beside p95; and per tenant the same attainment, so the worst tenant of a
tier is seen, not averaged away.

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
    from llmfleet.sim.workload import AnyWorkload

IN_FLIGHT, DONE, REJECTED = 1, 2, 3
JAIN_WINDOW = 600.0
SLO_PERCENTILE = 0.95
"""The tiers' latency targets are p95 targets (``ttftP95Seconds``, ``e2eP95Seconds``)."""
MIN_TENANT_REQUESTS = 20
"""A tenant with fewer decided requests is not ranked for the worst-tenant figure."""


class LogHistogram:
    """Counts of positive values in log-spaced bins (a fixed-size quantile sketch)."""

    LO = 1e-3
    PER_DECADE = 100
    DECADES = 8

    def __init__(self) -> None:
        self._counts = np.zeros(self.PER_DECADE * self.DECADES + 2, dtype=np.int64)
        self._buf: list[float] = []  # binned in batches (one vectorised log per 4096 adds)
        self.n = 0
        self.total = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        self._buf.append(x)
        if len(self._buf) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        x = np.asarray(self._buf)
        self._buf.clear()
        i = np.zeros(x.size, dtype=np.int64)
        big = x >= self.LO
        i[big] = 1 + (np.log10(x[big] / self.LO) * self.PER_DECADE).astype(np.int64)
        np.add.at(self._counts, np.minimum(i, self._counts.size - 1), 1)

    @property
    def counts(self) -> np.ndarray:
        self._flush()
        return self._counts

    def edges(self) -> np.ndarray:
        """Upper edge of each bin (the underflow bin's is LO; the overflow's is inf)."""
        k = np.arange(1, self.counts.size - 1)
        inner = self.LO * 10.0 ** (k / self.PER_DECADE)
        return np.concatenate([[self.LO], inner, [np.inf]])

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (upper edge of its bin, geometric centre inside the range)."""
        if self.n == 0:
            return float("nan")
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, q * self.n, side="left"))
        if i == 0:
            return self.LO
        if i >= self.counts.size - 1:
            return self.LO * 10.0 ** (self.DECADES)
        return float(self.LO * 10.0 ** ((i - 0.5) / self.PER_DECADE))

    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, fraction of values <= it) at every bin's upper edge with counts."""
        keep = self.counts > 0
        cum = np.cumsum(self.counts) / max(self.n, 1)
        return self.edges()[keep], cum[keep]


@dataclass
class TierStats:
    requests: int = 0
    completed: int = 0
    rejected: int = 0
    ok: int = 0
    late: int = 0
    ttft: LogHistogram = field(default_factory=LogHistogram)
    e2e: LogHistogram = field(default_factory=LogHistogram)
    hour_decided: list[int] = field(default_factory=list)
    """Per hour of arrival: requests with an outcome (completed, rejected, overdue)."""
    hour_ok: list[int] = field(default_factory=list)
    """Per hour of arrival: of those, the ones that met every target of the tier."""

    def decide(self, arrival: float, ok: bool) -> None:
        h = int(arrival // 3600)
        while len(self.hour_decided) <= h:
            self.hour_decided.append(0)
            self.hour_ok.append(0)
        self.hour_decided[h] += 1
        self.hour_ok[h] += ok

    def hours_within_target(self) -> tuple[int, int]:
        """(hours whose share of requests within target is >= SLO_PERCENTILE, hours with
        decided requests)."""
        d = np.asarray(self.hour_decided, dtype=float)
        ok = np.asarray(self.hour_ok, dtype=float)
        busy = d > 0
        held = ok[busy] >= SLO_PERCENTILE * d[busy] - 1e-9
        return int(held.sum()), int(busy.sum())


@dataclass
class TenantStats:
    requests: int = 0
    completed: int = 0
    ok: int = 0
    rejected: int = 0
    rejected_by: Counter[str] = field(default_factory=Counter)
    asked_tokens: float = 0.0
    served_tokens: float = 0.0
    ttft: LogHistogram = field(default_factory=LogHistogram)
    e2e: LogHistogram = field(default_factory=LogHistogram)


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
    wl: AnyWorkload
    snap: FleetSnapshot
    pools: Mapping[tuple[str, str], NodePool]
    keep_requests: bool = False
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
        self.tiers = {t.metadata.name: t.spec for t in self.snap.tiers}
        self.tier_stats: dict[str, TierStats] = {}
        self.tenant_stats = {name: TenantStats() for name in self.wl.tenants}
        self.weights = {t.spec.tenant_id: t.spec.weight for t in self.snap.tenants}
        self._tenant_ix = {name: i for i, name in enumerate(self.wl.tenants)}
        self.window_served: list[np.ndarray] = []
        self.window_backlogged: list[np.ndarray] = []
        self.flying: dict[int, Any] = {}
        self.arrived_n = 0
        self.done_n = 0
        self.rejected_n = 0
        self.retried_n = 0
        self.spilled_n = 0
        if self.keep_requests:
            n = len(self.wl)
            self.status = np.zeros(n, dtype=np.int8)
            self.admit = np.full(n, np.nan)
            self.ttft = np.full(n, np.nan)
            self.e2e = np.full(n, np.nan)
            self.done_at = np.full(n, np.nan)
        self.meters = {
            k: PoolMeter(p.capacity_type == "spot", p.gpus_per_node, p.price_per_node_hour)
            for k, p in self.pools.items()
        }
        self._last_sample = -math.inf

    # ---------------------------------------------------------------- request events
    def arrived(self, req: Any) -> None:
        self.arrived_n += 1
        self.flying[req.id] = req
        st = self.tier_stats.setdefault(req.tier, TierStats())
        st.requests += 1
        ts = self.tenant_stats[req.tenant]
        ts.requests += 1
        ts.asked_tokens += req.prompt_tokens + req.output_tokens
        if self.keep_requests:
            self.status[req.id] = IN_FLIGHT

    def admitted(self, req: Any, now: float) -> None:
        if math.isnan(req.admitted_at):
            req.admitted_at = now
            if self.keep_requests:
                self.admit[req.id] = now

    def first_token(self, req: Any, now: float) -> None:
        req.ttft = now - req.arrival
        if self.keep_requests:
            self.ttft[req.id] = req.ttft

    def completed(self, req: Any, now: float) -> None:
        self.flying.pop(req.id, None)
        self.done_n += 1
        e2e = now - req.arrival
        st = self.tier_stats[req.tier]
        st.completed += 1
        st.ttft.add(req.ttft)
        st.e2e.add(e2e)
        spec = self.tiers[req.tier]
        if spec.deadline is not None:
            ok = now <= req.deadline
            st.late += not ok
        else:
            it = spec.interactive
            ok = it is None or (
                (it.ttft_p95_seconds is None or req.ttft <= it.ttft_p95_seconds)
                and (it.e2e_p95_seconds is None or e2e <= it.e2e_p95_seconds)
            )
        st.ok += ok
        st.decide(req.arrival, ok)
        ts = self.tenant_stats[req.tenant]
        ts.completed += 1
        ts.ok += ok
        tokens = req.prompt_tokens + req.output_tokens
        ts.served_tokens += tokens
        ts.ttft.add(req.ttft)
        ts.e2e.add(e2e)
        u = self._tenant_ix[req.tenant]
        w = self._window(now)
        self.window_served[w][u] += tokens
        if req.admitted_at - req.arrival > 1.0:
            self.window_backlogged[w][u] = True
        if self.keep_requests:
            self.status[req.id] = DONE
            self.e2e[req.id] = e2e
            self.done_at[req.id] = now

    def rejected(self, req: Any, reason: str, now: float) -> None:
        self.flying.pop(req.id, None)
        self.rejected_n += 1
        self.reasons[reason] += 1
        st = self.tier_stats[req.tier]
        st.rejected += 1
        st.late += now > req.deadline
        st.decide(req.arrival, False)
        ts = self.tenant_stats[req.tenant]
        ts.rejected += 1
        ts.rejected_by[reason] += 1
        if self.keep_requests:
            self.status[req.id] = REJECTED
            self.done_at[req.id] = now

    def retried(self, req: Any, why: str) -> None:
        if req.retries == 1:
            self.retried_n += 1
        self.retry_reasons[why] += 1

    def spilled(self, req: Any) -> None:
        """The ingress sent ``req`` to another region than its route picked (a burst)."""
        del req
        self.spilled_n += 1

    def _window(self, now: float) -> int:
        w = int(now // JAIN_WINDOW)
        while len(self.window_served) <= w:
            self.window_served.append(np.zeros(len(self.wl.tenants)))
            self.window_backlogged.append(np.zeros(len(self.wl.tenants), dtype=bool))
        return w

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
        flying = set(self.flying)
        self.held_at_end = len(held)
        if held != flying:
            lost = sorted(flying - held)[:5]
            extra = sorted(held - flying)[:5]
            raise ConservationError(
                f"requests in flight but held nowhere: {lost}; held but not in flight: {extra}"
            )
        for req in self.flying.values():  # overdue while still queued: a deadline miss
            if req.deadline < end:
                self.tier_stats[req.tier].late += 1
                self.tier_stats[req.tier].decide(req.arrival, False)

    # ---------------------------------------------------------------- summaries
    def summary(self) -> dict[str, Any]:
        gpu_h = {"on-demand": 0.0, "spot": 0.0}
        usd = {"on-demand": 0.0, "spot": 0.0}
        for m in self.meters.values():
            k = "spot" if m.spot else "on-demand"
            gpu_h[k] += m.node_seconds * m.gpus_per_node / 3600.0
            usd[k] += m.node_seconds * m.price / 3600.0
        open_by_tier = Counter(
            r.tier for r in self.flying.values() if r.deadline >= self.end
        )
        tiers: dict[str, dict[str, Any]] = {}
        for name in self.wl.tiers:
            st = self.tier_stats.get(name)
            if st is None or st.requests == 0:
                continue
            # requests still in flight and not yet overdue have no outcome yet
            decided = max(st.requests - open_by_tier[name], 1)
            held, hours = st.hours_within_target()
            worst = self.worst_tenant(name)
            tiers[name] = {
                "requests": st.requests, "completed": st.completed, "rejected": st.rejected,
                "attainment": st.ok / decided,
                "hours": hours, "hours_within_target": held,
                "hourly_attainment": held / hours if hours else float("nan"),
                "worst_tenant": worst[0], "worst_tenant_attainment": worst[1],
                "deadline_misses": st.late if self.tiers[name].deadline is not None else 0,
                **_pct("ttft", st.ttft), **_pct("e2e", st.e2e),
            }
        return {
            "requests": self.arrived_n,
            "completed": self.done_n,
            "rejected": self.rejected_n,
            "in_flight_end": len(self.flying),
            "reject_reasons": dict(self.reasons),
            "retried": self.retried_n,
            "spilled": self.spilled_n,
            "retry_reasons": dict(self.retry_reasons),
            "gpu_hours": gpu_h, "usd": usd,
            "gpu_hours_total": sum(gpu_h.values()), "usd_total": sum(usd.values()),
            "loading_gpu_hours": self.loading_gpu_seconds / 3600.0,
            "scaling_actions": self.actions, "capacity_shortfalls": self.shortfalls,
            "spot_interruptions": self.interruptions,
            "tiers": tiers, "jain": self.jain(),
        }

    def worst_tenant(self, tier: str) -> tuple[str, float]:
        """The tenant of ``tier`` (by its TenantQuota) with the lowest attainment, among
        those with at least MIN_TENANT_REQUESTS decided requests ("", nan when none)."""
        tier_of = {t.spec.tenant_id: t.spec.tier for t in self.snap.tenants}
        worst = ("", float("nan"))
        for name, ts in self.tenant_stats.items():
            decided = ts.completed + ts.rejected
            if tier_of.get(name) != tier or decided < MIN_TENANT_REQUESTS:
                continue
            a = ts.ok / decided
            if math.isnan(worst[1]) or a < worst[1]:
                worst = (name, a)
        return worst

    def per_tenant(self) -> list[dict[str, Any]]:
        return [
            {"tenant": name, "requests": ts.requests, "completed": ts.completed,
             "rejected": ts.rejected, "throttled": ts.rejected_by.get("throttled", 0),
             "attainment": ts.ok / max(ts.completed + ts.rejected, 1),
             "asked_tokens": ts.asked_tokens, "served_tokens": ts.served_tokens,
             **_pct("ttft", ts.ttft), **_pct("e2e", ts.e2e)}
            for name, ts in self.tenant_stats.items()
        ]

    def jain(self) -> float:
        if not self.window_served:
            return float("nan")
        w = np.array([self.weights.get(n, 1.0) for n in self.wl.tenants])
        vals = []
        for served, back in zip(self.window_served, self.window_backlogged, strict=True):
            x = served[back] / w[back]
            if x.size >= 2 and (x**2).sum() > 0:
                vals.append(x.sum() ** 2 / (x.size * (x**2).sum()))
        return float(np.mean(vals)) if vals else 1.0


def _pct(name: str, h: LogHistogram) -> dict[str, float]:
    return {f"{name}_p50": h.quantile(0.50), f"{name}_p95": h.quantile(0.95),
            f"{name}_p99": h.quantile(0.99), f"{name}_p999": h.quantile(0.999),
            f"{name}_mean": h.mean()}
