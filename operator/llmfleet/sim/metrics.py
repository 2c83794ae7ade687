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
from llmfleet.sim.gateway import THROTTLED

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
    SIZE = PER_DECADE * DECADES + 2

    def __init__(self) -> None:
        self._counts = np.zeros(self.SIZE, dtype=np.int64)
        self._buf: list[float] = []  # binned in batches (one vectorised log per 4096 adds)
        self.n = 0
        self.total = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        self._buf.append(x)
        if len(self._buf) >= 4096:
            self._flush()

    def add_binned(self, counts: np.ndarray, n: int, total: float) -> None:
        """Add ``n`` values summing to ``total`` whose bins (:func:`bin_index`) count
        ``counts``."""
        self._counts += counts
        self.n += n
        self.total += total

    def _flush(self) -> None:
        if not self._buf:
            return
        x = np.asarray(self._buf)
        self._buf.clear()
        self._counts += np.bincount(bin_index(x), minlength=self.SIZE)

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


def bin_index(x: np.ndarray) -> np.ndarray:
    """The :class:`LogHistogram` bin of each value of ``x``: 0 below ``LO``, then
    ``PER_DECADE`` a decade, the last one for everything above the range."""
    h = LogHistogram
    i = np.zeros(x.size, dtype=np.int64)
    big = x >= h.LO
    i[big] = 1 + (np.log10(x[big] / h.LO) * h.PER_DECADE).astype(np.int64)
    return np.minimum(i, h.SIZE - 1)


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
    hour_throttled: list[int] = field(default_factory=list)
    """Per hour of arrival: of the decided, the ones throttled over their tenant's limit."""
    throttled: int = 0

    def _grow(self, h: int) -> None:
        while len(self.hour_decided) <= h:
            self.hour_decided.append(0)
            self.hour_ok.append(0)
            self.hour_throttled.append(0)

    def decide(self, arrival: float, ok: bool, throttled: bool = False) -> None:
        h = int(arrival // 3600)
        self._grow(h)
        self.hour_decided[h] += 1
        self.hour_ok[h] += ok
        self.hour_throttled[h] += throttled
        self.throttled += throttled

    def hours_within_target(self, within_limits: bool = False) -> tuple[int, int]:
        """(hours whose share of requests within target is >= SLO_PERCENTILE, hours with
        decided requests); ``within_limits`` leaves out the requests throttled over their
        tenant's limit (as an SLI leaves out the 429s of a client over its quota)."""
        d = np.asarray(self.hour_decided, dtype=float)
        if within_limits:
            d = d - np.asarray(self.hour_throttled, dtype=float)
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
        self._tier_stats: dict[str, TierStats] = {}
        self._tenant_stats = {name: TenantStats() for name in self.wl.tenants}
        self.weights = {t.spec.tenant_id: t.spec.weight for t in self.snap.tenants}
        self._tenant_ix = {name: i for i, name in enumerate(self.wl.tenants)}
        self._tier_ix = {name: i for i, name in enumerate(self.wl.tiers)}
        # per tier: (deadline tier, TTFT target, e2e target); interactive targets None: any
        self._targets: dict[str, tuple[bool, float | None, float | None]] = {}
        for name, spec in self.tiers.items():
            it = spec.interactive
            self._targets[name] = (
                spec.deadline is not None,
                None if it is None else it.ttft_p95_seconds,
                None if it is None else it.e2e_p95_seconds,
            )
        # completions not yet in the latency histograms (binned a batch at a time)
        self._d_tier: list[int] = []
        self._d_tenant: list[int] = []
        self._d_ttft: list[float] = []
        self._d_e2e: list[float] = []
        self.window_served: list[list[float]] = []
        self.window_backlogged: list[list[bool]] = []
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

    @property
    def tier_stats(self) -> dict[str, TierStats]:
        """Per tier: counts and latency histograms (every completion so far included)."""
        self._flush_done()
        return self._tier_stats

    @property
    def tenant_stats(self) -> dict[str, TenantStats]:
        """Per tenant: counts, tokens and latency histograms."""
        self._flush_done()
        return self._tenant_stats

    def _flush_done(self) -> None:
        """Bin the buffered completions' TTFT and e2e into their tier's and tenant's
        histograms (one vectorised log and one bincount per batch)."""
        if not self._d_ttft:
            return
        ttft, e2e = np.asarray(self._d_ttft), np.asarray(self._d_e2e)
        size = LogHistogram.SIZE
        bins = ((bin_index(ttft), ttft, "ttft"), (bin_index(e2e), e2e, "e2e"))
        groups: tuple[tuple[list[int], tuple[str, ...], Mapping[str, Any]], ...] = (
            (self._d_tier, self.wl.tiers, self._tier_stats),
            (self._d_tenant, self.wl.tenants, self._tenant_stats),
        )
        for ixs, names, stats in groups:
            ix = np.asarray(ixs, dtype=np.int64)
            k = len(names)
            n = np.bincount(ix, minlength=k)
            for b, x, attr in bins:
                counts = np.bincount(ix * size + b, minlength=k * size).reshape(k, size)
                sums = np.bincount(ix, weights=x, minlength=k)
                for j in np.nonzero(n)[0].tolist():
                    h: LogHistogram = getattr(stats[names[j]], attr)
                    h.add_binned(counts[j], int(n[j]), float(sums[j]))
        for buf in (self._d_tier, self._d_tenant, self._d_ttft, self._d_e2e):
            buf.clear()

    # ---------------------------------------------------------------- request events
    def arrived(self, req: Any) -> None:
        self.arrived_n += 1
        self.flying[req.id] = req
        st = self._tier_stats.get(req.tier)
        if st is None:
            st = self._tier_stats[req.tier] = TierStats()
        st.requests += 1
        ts = self._tenant_stats[req.tenant]
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
        arrival, ttft, tier, tenant = req.arrival, req.ttft, req.tier, req.tenant
        e2e = now - arrival
        st = self._tier_stats[tier]
        st.completed += 1
        deadline, ttft_max, e2e_max = self._targets[tier]
        if deadline:
            ok = now <= req.deadline
            st.late += not ok
        else:
            ok = (ttft_max is None or ttft <= ttft_max) and (e2e_max is None or e2e <= e2e_max)
        st.ok += ok
        h = int(arrival // 3600)  # TierStats.decide, inlined
        hd = st.hour_decided
        if len(hd) <= h:
            st._grow(h)
        hd[h] += 1
        st.hour_ok[h] += ok
        ts = self._tenant_stats[tenant]
        ts.completed += 1
        ts.ok += ok
        tokens = req.prompt_tokens + req.output_tokens
        ts.served_tokens += tokens
        u = self._tenant_ix[tenant]
        self._d_tier.append(self._tier_ix[tier])
        self._d_tenant.append(u)
        self._d_ttft.append(ttft)
        self._d_e2e.append(e2e)
        if len(self._d_ttft) >= 8192:
            self._flush_done()
        w = int(now // JAIN_WINDOW)
        if w >= len(self.window_served):
            self._window(now)
        self.window_served[w][u] += tokens
        if req.admitted_at - arrival > 1.0:
            self.window_backlogged[w][u] = True
        if self.keep_requests:
            self.status[req.id] = DONE
            self.e2e[req.id] = e2e
            self.done_at[req.id] = now

    def rejected(self, req: Any, reason: str, now: float) -> None:
        self.flying.pop(req.id, None)
        self.rejected_n += 1
        self.reasons[reason] += 1
        st = self._tier_stats[req.tier]
        st.rejected += 1
        st.late += now > req.deadline
        st.decide(req.arrival, False, throttled=reason == THROTTLED)
        ts = self._tenant_stats[req.tenant]
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
            self.window_served.append([0.0] * len(self.wl.tenants))
            self.window_backlogged.append([False] * len(self.wl.tenants))
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
    def within_limits(self) -> dict[str, dict[str, float]]:
        """Per tier with requests: those throttled over their tenant's limit, and the share of
        hours in SLO without them (:meth:`TierStats.hours_within_target`)."""
        out: dict[str, dict[str, float]] = {}
        for name in self.wl.tiers:
            st = self.tier_stats.get(name)
            if st is None or st.requests == 0:
                continue
            held, hours = st.hours_within_target(within_limits=True)
            out[name] = {"throttled": st.throttled,
                         "hourly_attainment_within_limits": held / hours if hours else math.nan}
        return out

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
        for served_l, back_l in zip(self.window_served, self.window_backlogged, strict=True):
            served, back = np.asarray(served_l), np.asarray(back_l, dtype=bool)
            x = served[back] / w[back]
            if x.size >= 2 and (x**2).sum() > 0:
                vals.append(x.sum() ** 2 / (x.size * (x**2).sum()))
        return float(np.mean(vals)) if vals else 1.0


def _pct(name: str, h: LogHistogram) -> dict[str, float]:
    return {f"{name}_p50": h.quantile(0.50), f"{name}_p95": h.quantile(0.95),
            f"{name}_p99": h.quantile(0.99), f"{name}_p999": h.quantile(0.999),
            f"{name}_mean": h.mean()}
