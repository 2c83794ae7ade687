"""The twin's event loop: continuous-batching replicas, routers, nodes, spot, deadline queue.

**Replica (analytic continuous batching).** A replica holds at most ``C`` sequences
(admitted requests). Admitted prompts are prefilled one at a time, FIFO, at ``P``
tokens/s; while a prefill runs, decoding pauses (vLLM's prefill-first scheduling). With
``n`` sequences decoding, each advances at

    r(n) = D / max(n, s C)        tokens/s        (batch-size-dependent slowdown)

so the replica's decode throughput grows with the batch until ``n = s C`` and is ``D``
beyond. TTFT = queueing + wait for earlier prefills + ``L_in / P`` + ``k s C / D``; a request
then decodes ``L_out`` tokens. The last term is ``k`` (``engine.first_token_steps``, default
0: today's TTFT) decode steps of an unloaded replica, ``tau0 = s C / D``: in vLLM the first
token comes out of the scheduler step that finishes the prefill, so a measured TTFT is
``tau0 + L_in / P`` (llm-d's BLIS tables fit it with ``k = 1``, see
:mod:`llmfleet_bench.calibrate`). It is latency only: the prefill and decode work, so the
capacity below, do not change, and the request's ``L_out`` decode tokens still start at the
prefill's end (with ``k <= 1``, ``k tau0`` never exceeds one decode step, ``max(n, s C) /
D``, so the first token is never recorded after the request completes). All decoding sequences share one
rate, so the replica keeps a *virtual progress* ``V`` (tokens each decoding sequence has
made) and a heap of finish marks ``V_start + L_out``; events happen only at admissions,
prefill ends and completions.
At saturation the time per request is ``L_in/P + L_out/D``: the planner's ``mu(p)``.

**Routing.** Per (model, tier, origin) the current target's fractions pick a region
(seeded); inside it, the ready replica with the least load (slots used + waiting, over
``C``), spot replicas only for tiers that allow spot (unless nothing else is ready), pools
dedicated to the other lane excluded. No ready replica there: the nearest region with one; none anywhere: the request
waits in a pending list until one is ready (interactive: up to a timeout).
A request served outside its origin region pays the round trip ``rtt(origin, region)`` on
its TTFT and end-to-end latency (the Regions' ``latencies``).

**Spill** (a policy's ``FleetTarget.spill``: llmfleet's ingress). A replica's wait for a
new interactive prompt is the interactive prompt tokens queued ahead of it over ``P`` plus
what remains of the current prefill (``inf`` with no free slot). When the replica the route
picked would miss the tier's TTFT target,

    wait + L_in / P + k tau0 + rtt(origin, region) > ttft_target,

the request goes to the least-waiting replica of the nearest other region that meets it
(round trip included), if any; else it stays. The plan sizes each region for its routed
load; the spill absorbs what a burst adds inside a step, before the correction's replicas
are up (model load time).

**Prefill order.** Interactive prompts are prefilled before deadline ones (a deadline
prompt being prefilled is not preempted): batch work yields the prefill, SageServe's
non-interactive queue.

**Deadline tiers** go to a deadline queue per model (earliest deadline first) and are
released to replicas whose slot use is at or below ``batch_release_utilization``.

**Nodes.** Asking for a node bills it at once and makes it ready after the pool's
provisioning delay; a replica placed on it then loads for the profile's load time. Spot
nodes are interrupted after an exponential time at the pool's rate; their requests are
retried elsewhere (counted), up to ``max_retries``.

**Spot storms** (``engine.spot_storms``). A pool's interruption hazard per node is
piecewise constant in time:

    h(t) = max(h0, max{ r_s : storm s names the pool and a_s <= t < b_s })     per hour

with ``h0`` the pool's ``spotInterruptionRatePerHour`` and ``[a_s, b_s)`` the storm's
window. A node created at ``t0`` is interrupted at the ``T`` where the cumulative hazard
reaches a unit exponential draw ``E``:

    H(t0, T) = integral_{t0}^{T} h(u) du / 3600 = E,       E ~ Exp(1)

(inversion of the survival function ``P(T > t) = exp(-H(t0, t))``; over each constant
piece it is linear, so :func:`spot_interruption_delay` walks the window edges). It is exact
for any window, however the node's life straddles its edges: nodes alive when a storm starts
are interrupted at rate ``r_s`` during it, and at ``h0`` again after it. Without storms the
draw is the exponential of before, ``E`` hours / ``h0``. The policies are not told: they see
the pools' ``h0`` and the interruptions as they happen.

**Speed** (``llmfleet bench sim``; the behaviour above is unchanged, pinned by
``tests/unit/sim/test_engine_reference.py`` against the engine before these). A chunk of the
stream is turned into Python values a slice at a time (no numpy scalar per request); its
demand history per (flow, step) and tokens sent per (tenant, model, origin) are tallied with
one vectorised pass (a policy reads only complete steps, all in the past, and a flow or usage
key only from its first arrival on). Route CDFs, candidate replicas per (model, region, spot,
lane), the other regions by distance and the deadline-release candidates are cached until the
target or the ready set changes; each replica keeps a ``held`` counter (the router's load);
the no-op calls of a plain FCFS scheduler are skipped. Routing uniforms are drawn
:data:`_UNIFORM_BATCH` at a time from the engine's generator: each double of
``Generator.random`` is one 64-bit step of PCG64, so before any other draw (a spot node's
life) the generator is put back to the state it had before the batch and advanced by the
uniforms used (:meth:`Engine._sync_rng`), and the stream is exactly that of one draw per
request: same seed, same metrics, the same numbers as before.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from llmfleet.api.references import FleetSnapshot
from llmfleet.api.region import NodePool
from llmfleet.fairness.scheduling import FCFS, Scheduler
from llmfleet.forecast.types import DemandHistory, DemandRates, FlowKey
from llmfleet.sim.gateway import THROTTLED, Gateway
from llmfleet.sim.metrics import Recorder
from llmfleet.sim.policy import (
    FleetTarget,
    Observation,
    Policy,
    PoolKey,
    ReplicaKey,
    ReplicaStats,
)
from llmfleet.sim.scenario import EngineSpec, SpotStorm
from llmfleet.sim.workload import AnyWorkload, Workload

SchedulerFactory = Callable[[], Scheduler]

# event kinds (ordered: at equal times replicas settle before arrivals, control last)
_REPLICA, _NODE_READY, _REPLICA_READY, _SPOT, _ARRIVAL, _TICK, _DECIDE, _REACT = range(8)
_UNIFORM_BATCH = 1024
PEAK_RESOLUTION_SECONDS = 60
"""The resolution of the history's per-step peaks (a Prometheus subquery's ``[step:1m]``)."""
_ROW_SLICE = 8192
"""Requests converted from a chunk's arrays to Python values at once (:meth:`Engine._rows`)."""
"""Routing uniforms drawn from the engine's generator at once (:meth:`Engine._uniform`)."""
_Row = tuple[float, int, str, str, str, str, int, int, int, int, int,
             "tuple[int, int, int] | None"]
"""A request as :meth:`Engine._columns` hands it to :meth:`Engine._arrive`."""


@dataclass(slots=True, eq=False)
class Request:
    """One request (satisfies :class:`llmfleet.fairness.scheduling.RequestView`)."""

    id: int
    tenant: str
    tier: str
    model: str
    arrival: float
    prompt_tokens: int
    output_tokens: int
    interaction: int
    call_index: int = 0
    origin: str = ""
    retries: int = 0
    deadline: float = math.inf
    lane: str = "interactive"
    admitted_at: float = math.nan
    """First admission to a replica (the recorder's backlog test)."""
    ttft: float = math.nan
    """Seconds from arrival to the first token (of the last attempt)."""
    net: float = 0.0
    """Round trip from the origin's ingress to the serving region, seconds (0 at home)."""


@dataclass(frozen=True)
class Profile:
    prefill: float
    decode: float
    max_seqs: int
    saturation: float
    load_seconds: float
    gpus: int
    first_token_delay: float = 0.0
    """Seconds from the prefill's end to the first token: ``k s C / D`` (module doc)."""


@dataclass(eq=False)
class Node:
    id: int
    region: str
    pool: str
    gpus: int
    spot: bool
    ready_at: float
    alive: bool = True
    replicas: list[Replica] = field(default_factory=list)

    @property
    def free_gpus(self) -> int:
        return self.gpus - sum(r.profile.gpus for r in self.replicas)


@dataclass(eq=False)
class Replica:
    id: int
    key: ReplicaKey
    profile: Profile
    scheduler: Scheduler
    node: Node | None = None
    state: str = "waiting-node"  # waiting-node | loading | ready | draining | dead
    start_load: float = math.inf
    epoch: int = 0
    waiting: list[Request] = field(default_factory=list)
    prefill_q: deque[Request] = field(default_factory=deque)
    """Admitted interactive prompts waiting for the prefill, FIFO."""
    prefill_bq: deque[Request] = field(default_factory=deque)
    """Admitted deadline prompts: prefilled only when no interactive one waits."""
    queued_prompt: float = 0.0
    """Interactive prompt tokens waiting (``waiting``, ``prefill_q``) to be prefilled."""
    prefilling: Request | None = None
    prefill_end: float = 0.0
    decode: list[tuple[float, int, Request]] = field(default_factory=list)
    v: float = 0.0
    v_time: float = 0.0
    served_tokens: float = 0.0
    held: int = 0
    """Requests held: ``waiting`` + ``prefill_q`` + ``prefill_bq`` + the one prefilling +
    ``decode`` (kept by the engine where requests come and go: the router's key)."""
    cap: int = field(init=False)
    """``profile.max_seqs``."""
    floor: float = field(init=False)
    """``max(s C, 1e-9)``: the batch size from which decode is saturated (:meth:`rate`)."""
    fcfs: bool = field(init=False)
    """The scheduler is plain :class:`FCFS`: its calls are no-ops the engine skips."""
    pool: PoolKey = field(init=False)
    """``(region, pool)`` of ``key``."""

    def __post_init__(self) -> None:
        self.pool = (self.key[1], self.key[2])
        p = self.profile
        self.cap = p.max_seqs
        self.floor = max(p.saturation * p.max_seqs, 1e-9)
        self.fcfs = type(self.scheduler) is FCFS

    @property
    def slots(self) -> int:
        return self.held - len(self.waiting)

    @property
    def load(self) -> float:
        return self.held / self.cap

    def wait(self, now: float) -> float:
        """Seconds an interactive prompt arriving now waits before its prefill starts: the
        interactive prompts ahead of it at ``P`` and what remains of the one being
        prefilled (deadline prompts yield); ``inf`` when no slot is free (the wait is then a
        completion away, which the replica cannot tell)."""
        p = self.profile
        if self.held >= p.max_seqs:
            return math.inf
        ahead = self.queued_prompt
        if self.prefilling is not None:
            ahead += max(self.prefill_end - now, 0.0) * p.prefill
        return ahead / p.prefill

    def rate(self) -> float:
        return self.profile.decode / max(len(self.decode), self.floor)

    def advance(self, now: float) -> None:
        if self.prefilling is None and self.decode:
            self.v += (now - self.v_time) * self.rate()
        self.v_time = now


class Engine:
    """Replays a :class:`Workload` against a policy on the fleet of a scenario."""

    def __init__(
        self,
        snap: FleetSnapshot,
        workload: AnyWorkload,
        policy: Policy,
        settings: EngineSpec | None = None,
        scheduler_factory: SchedulerFactory = FCFS,
        seed: int = 0,
        progress: Callable[[float], None] | None = None,
        *,
        keep_requests: bool = False,
    ) -> None:
        """``keep_requests`` keeps per-request arrays in the recorder (tests by hand); the
        default keeps only aggregates, in memory that does not grow with the trace."""
        self.snap = snap
        self.wl = workload
        self.policy = policy
        self.cfg = settings or EngineSpec()
        self.new_scheduler = scheduler_factory
        self.rng = np.random.default_rng(seed + 7919)
        self.progress = progress
        self.now = 0.0
        self._seq = 0
        self._heap: list[tuple[float, int, int, int, object]] = []
        self.pools = {(r.metadata.name, p.name): p for r in snap.regions for p in r.spec.pools}
        self.storms = storm_windows(self.cfg.spot_storms, self.pools)
        """(region, pool) -> the spot storms' windows ``(start s, end s, rate /h)``."""
        self.rtt = {
            r.metadata.name: {lat.region: lat.rtt_ms for lat in r.spec.latencies}
            for r in snap.regions
        }
        self.tiers = {t.metadata.name: t for t in snap.tiers}
        self._ttft_target = {
            t.metadata.name: t.spec.interactive.ttft_p95_seconds
            for t in snap.tiers if t.spec.interactive is not None
            and t.spec.interactive.ttft_p95_seconds is not None
        }
        self.weights = {t.spec.tenant_id: t.spec.weight for t in snap.tenants}
        self.profiles: dict[ReplicaKey, Profile] = {}
        for m in snap.models:
            for (region, pool), np_ in self.pools.items():
                allowed = m.spec.allowed_regions
                if allowed and region not in allowed:
                    continue
                for pr in m.spec.profiles:
                    if pr.gpu_type == np_.gpu_type and pr.gpus_per_replica <= np_.gpus_per_node:
                        sat = self.cfg.saturation_fraction
                        self.profiles[(m.metadata.name, region, pool)] = Profile(
                            pr.prefill_tokens_per_second, pr.decode_tokens_per_second,
                            pr.max_concurrent_sequences, sat,
                            pr.load_seconds, pr.gpus_per_replica,
                            first_token_delay=self.cfg.first_token_steps * sat
                            * pr.max_concurrent_sequences / pr.decode_tokens_per_second,
                        )
        self.nodes: dict[PoolKey, list[Node]] = {k: [] for k in self.pools}
        self.replicas: dict[ReplicaKey, list[Replica]] = {}
        self.ready: dict[tuple[str, str], list[Replica]] = {}  # (model, region) -> ready
        self.target = FleetTarget(replicas={}, routes={})
        self.pending: dict[str, deque[Request]] = {}
        self.deadline_q: dict[str, list[tuple[float, int, Request]]] = {}
        self.rec = Recorder(workload, snap, self.pools, keep_requests)
        self._ids = 0
        step = int(snap.policies[0].spec.horizon.step_seconds)
        self.step = step
        n_steps = math.ceil(workload.duration / step) + 1
        self._flow_idx: dict[tuple[int, int, int], int] = {}
        """(model, origin, tier) -> its row of ``_hist``, for the flows that have arrived."""
        self._flow_row: dict[tuple[int, int, int], int] = {}
        """The same for every flow of the chunks seen so far (in first-arrival order)."""
        self._hist = np.zeros((0, n_steps, 3))
        forecast = snap.policies[0].spec.forecast
        self.peak_seconds = min(int(forecast.burst_window_seconds), step)
        """The policy's burst window (0: no peaks): the history's per-step peaks are the
        busiest ``peak_seconds`` of each step, a sliding window evaluated every
        :data:`PEAK_RESOLUTION_SECONDS` as Prometheus' subquery does."""
        self._per = max(step // PEAK_RESOLUTION_SECONDS, 1) if self.peak_seconds else 0
        self._fine = np.zeros((0, n_steps * self._per, 3))
        """Arrivals per (flow, minute): the peaks' source (empty without a burst window)."""
        self._tick_busy: dict[ReplicaKey, list[float]] = {}
        self._tick_tokens: dict[ReplicaKey, float] = {}
        self._last_obs = 0.0
        self._warm = False
        self._hist_cache: tuple[int, Mapping[FlowKey, DemandHistory]] | None = None
        self.gateway = Gateway()
        self._sent: dict[tuple[str, str, str], float] = {}
        """(tenant, model, origin) -> tokens sent so far (throttled included), as of the
        last :meth:`_usage` (tallied a chunk slice at a time, :meth:`_fold_sent`)."""
        self._use_ix: dict[tuple[str, str, str], int] = {}
        self._use_keys: list[tuple[str, str, str]] = []
        self._use_first: list[int] = []
        """Per (tenant, model, origin), in first-arrival order: the first request's id."""
        self._sent_total = np.zeros(0)
        self._sent_code = np.zeros(0, dtype=np.int64)
        self._sent_tokens = np.zeros(0)
        self._sent_off = 0
        self._sent_upto = 0
        # routing, derived from the target and the ready set (dropped when they change)
        self._route_cache: dict[tuple[str, str, str], tuple[list[str], list[float]] | None] = {}
        self._cands: dict[tuple[str, str, bool, str], list[Replica]] = {}
        self._others_cache: dict[tuple[str, str, str], list[str]] = {}
        self._batch_cands: dict[str, list[Replica]] = {}
        self._spot_ok = {t.metadata.name: t.spec.spot_allowed for t in snap.tiers}
        self._tier_deadline: list[float | None] = []
        for name in workload.tiers:
            spec = self.tiers[name].spec
            batch = spec.type == "deadline" and spec.deadline is not None
            self._tier_deadline.append(
                spec.deadline.completion_seconds if batch and spec.deadline else None)
        self._keep = keep_requests
        """The recorder keeps per-request arrays: call its admitted/first_token (else the
        engine sets the request's ``admitted_at`` and ``ttft`` itself, as they would)."""
        self._queue_factor = self.cfg.queue_limit_factor
        self._release_at = self.cfg.batch_release_utilization
        self._u_buf: list[float] = []
        self._u_pos = 0
        self._u_state: Mapping[str, Any] | None = None
        self._sent_at: deque[tuple[float, dict[tuple[str, str, str], float]]] = deque()
        self._recent_chunks: list[Workload] = []
        """The stream's current and previous chunks (the last minute's arrivals)."""

    # ------------------------------------------------------------------ events
    def _push(self, t: float, kind: int, a: int, obj: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, a, obj))

    def run(self) -> Recorder:
        self._push(0.0, _DECIDE, 0, None)
        react = getattr(self.policy, "react_seconds", None)
        if react is not None and hasattr(self.policy, "react"):
            self._push(float(react), _REACT, 0, None)
        self._push(self.cfg.tick_seconds, _TICK, 0, None)
        end = self.wl.duration
        heap = self._heap
        pop = heapq.heappop
        dispatch, replica_event, arrive = self._dispatch, self._replica_event, self._arrive
        live = ("ready", "draining")
        progress = self.progress
        last_report = 0.0
        over = False  # past the end
        for chunk in self.wl.chunks():  # an hour of the stream at a time
            self._recent_chunks = [*self._recent_chunks[-1:], chunk]
            rows = self._columns(chunk, end)
            for row in rows:
                ta = row[0]
                while heap and heap[0][0] <= ta:  # at equal times events come first
                    t, kind, _, a, obj = pop(heap)
                    if t > end:
                        over = True
                        break
                    self.now = t
                    if kind == _REPLICA:
                        rep: Replica = obj  # type: ignore[assignment]  # _REPLICA: a Replica
                        if a == rep.epoch and rep.state in live:
                            replica_event(rep)
                    else:
                        dispatch(kind, a, obj)
                if over or ta > end:
                    over = True
                    break
                self.now = ta
                arrive(row)
                if progress is not None and ta - last_report > 3600:
                    last_report = ta
                    progress(ta / end)
            if over:
                break
        while not over and heap:  # no more arrivals: the events up to the end
            t, kind, _, a, obj = pop(heap)
            if t > end:
                break
            self.now = t
            self._dispatch(kind, a, obj)
            if progress is not None and t - last_report > 3600:
                last_report = t
                progress(t / end)
        self.now = end
        self._fold_sent(self.rec.arrived_n)
        self.rec.finish(end, self._holders())
        return self.rec

    def _dispatch(self, kind: int, a: int, obj: object) -> None:
        if kind == _REPLICA:
            rep = obj
            assert isinstance(rep, Replica)
            if a == rep.epoch and rep.state in ("ready", "draining"):
                self._replica_event(rep)
        elif kind == _NODE_READY:
            assert isinstance(obj, Node)
            if obj.alive:
                for r in obj.replicas:
                    self._start_load(r)
        elif kind == _REPLICA_READY:
            assert isinstance(obj, Replica)
            if obj.state == "loading":
                self._became_ready(obj)
        elif kind == _SPOT:
            assert isinstance(obj, Node)
            if obj.alive:
                self._interrupt(obj)
        elif kind == _TICK:
            self._tick()
            self._push(self.now + self.cfg.tick_seconds, _TICK, 0, None)
        elif kind == _DECIDE:
            self._warm = self.now == 0.0  # the fleet the run starts with is already up
            self._apply(self.policy.decide(self._observe()))
            self._warm = False
            self._push(self.now + float(self.policy.interval_seconds), _DECIDE, 0, None)
        elif kind == _REACT:
            react = getattr(self.policy, "react", None)
            every = getattr(self.policy, "react_seconds", None)
            if react is not None and every is not None:
                t = react(self._observe())
                if t is not None:
                    self._apply(t)
                self._push(self.now + float(every), _REACT, 0, None)

    # ------------------------------------------------------------------ arrivals
    def _columns(self, wl: Workload, end: float) -> Iterator[_Row]:
        """The requests of the chunk ``wl`` as rows of Python values (arrival, id, tenant,
        tier, model, origin, prompt, output, interaction, call index, tier index, new flow
        or None); counts them into the demand history per (flow, step) at once (a policy
        reads only complete steps, all of them in the past, and a flow only from its first
        arrival on) and keeps what the usage tally needs."""
        n = len(wl)
        off = wl.offset
        self._fold_sent(off)  # every request of the chunks before has arrived
        arrival = wl.arrival.astype(np.float64, copy=False)
        # flows (model, origin, tier): a row of the history per flow, in first-arrival order
        nm, no, nt = len(wl.models), len(wl.regions), len(wl.tiers)
        code = (wl.model * no + wl.origin) * nt + wl.tier
        uniq, first = np.unique(code, return_index=True)
        new: dict[int, tuple[int, int, int]] = {}
        for c, i in sorted(zip(uniq.tolist(), first.tolist(), strict=True), key=lambda x: x[1]):
            key = (c // (no * nt), c // nt % no, c % nt)
            if key not in self._flow_row:
                self._flow_row[key] = len(self._flow_row)
                new[i] = key
        rows_needed = len(self._flow_row) - self._hist.shape[0]
        if rows_needed:
            self._hist = np.concatenate(
                [self._hist, np.zeros((rows_needed, *self._hist.shape[1:]))])
            self._fine = np.concatenate(
                [self._fine, np.zeros((rows_needed, *self._fine.shape[1:]))])
        if n:
            inside = arrival <= end  # the run stops at the first arrival past its end
            lut = np.full(nm * no * nt, -1, dtype=np.int64)
            for (m, o, t), f in self._flow_row.items():
                lut[(m * no + o) * nt + t] = f
            cell = (lut[code[inside]] * self._hist.shape[1]
                    + (arrival[inside] // self.step).astype(np.int64)) * 3
            flat = self._hist.reshape(-1)  # a view: the history is contiguous
            prompt = wl.prompt[inside].astype(np.float64)
            output = wl.output[inside].astype(np.float64)
            np.add.at(flat, cell, 1.0)
            np.add.at(flat, cell + 1, prompt)
            np.add.at(flat, cell + 2, output)
            if self._per:
                width = self._fine.shape[1]
                fine = (lut[code[inside]] * width + np.minimum(
                    (arrival[inside] // PEAK_RESOLUTION_SECONDS).astype(np.int64), width - 1))
                cells, inv = np.unique(fine, return_inverse=True)
                inv = inv.reshape(-1)
                ff = self._fine.reshape(-1, 3)  # a view, as above
                ff[cells, 0] += np.bincount(inv, minlength=cells.size)
                ff[cells, 1] += np.bincount(inv, weights=prompt, minlength=cells.size)
                ff[cells, 2] += np.bincount(inv, weights=output, minlength=cells.size)
        # tokens sent per (tenant, model, origin), tallied lazily (_fold_sent)
        nu = len(wl.tenants)
        use = (wl.tenant * nm + wl.model) * no + wl.origin
        uniq, first = np.unique(use, return_index=True)
        for c, i in sorted(zip(uniq.tolist(), first.tolist(), strict=True), key=lambda x: x[1]):
            key3 = (wl.tenants[c // (nm * no)], wl.models[c // no % nm], wl.regions[c % no])
            if key3 not in self._use_ix:
                self._use_ix[key3] = len(self._use_ix)
                self._use_first.append(off + i)
                self._use_keys.append(key3)
        lut = np.full(nu * nm * no, -1, dtype=np.int64)
        for (tn, mn, on), j in self._use_ix.items():
            lut[(wl.tenants.index(tn) * nm + wl.models.index(mn)) * no + wl.regions.index(on)] = j
        self._sent_code = lut[use]
        self._sent_tokens = (wl.prompt + wl.output).astype(np.float64)
        self._sent_off = off
        self._sent_upto = off
        return self._rows(wl, arrival, new)

    def _rows(self, wl: Workload, arrival: np.ndarray,
              new: dict[int, tuple[int, int, int]]) -> Iterator[_Row]:
        """The rows of :meth:`_columns`, converted :data:`_ROW_SLICE` at a time (memory of a
        slice, not of the chunk)."""
        tenant = np.asarray(wl.tenants, dtype=object)
        tier = np.asarray(wl.tiers, dtype=object)
        model = np.asarray(wl.models, dtype=object)
        origin = np.asarray(wl.regions, dtype=object)
        n, off = len(wl), wl.offset
        for a in range(0, n, _ROW_SLICE):
            b = min(a + _ROW_SLICE, n)
            ids = range(off + a, off + b)
            flows: list[tuple[int, int, int] | None] = [None] * (b - a)
            for i, key in new.items():
                if a <= i < b:
                    flows[i - a] = key
            yield from zip(
                arrival[a:b].tolist(), ids, tenant[wl.tenant[a:b]].tolist(),
                tier[wl.tier[a:b]].tolist(), model[wl.model[a:b]].tolist(),
                origin[wl.origin[a:b]].tolist(),
                wl.prompt[a:b].tolist(), wl.output[a:b].tolist(),
                wl.interaction[a:b].tolist() if wl.interaction is not None else ids,
                wl.call_index[a:b].tolist() if wl.call_index is not None else [0] * (b - a),
                wl.tier[a:b].tolist(), flows, strict=True,
            )

    def _fold_sent(self, upto: int) -> None:
        """Add the tokens of the requests with ids below ``upto`` (of the current chunk)
        to the per-(tenant, model, origin) tally."""
        if upto <= self._sent_upto:
            return
        a, b = self._sent_upto - self._sent_off, upto - self._sent_off
        add = np.bincount(self._sent_code[a:b], weights=self._sent_tokens[a:b],
                          minlength=len(self._use_keys))
        if self._sent_total.size < add.size:
            self._sent_total = np.concatenate(
                [self._sent_total, np.zeros(add.size - self._sent_total.size)])
        self._sent_total[: add.size] += add
        self._sent_upto = upto

    def _arrive(self, row: _Row) -> None:
        """One request arrives (a row of :meth:`_columns`; ``self.now`` is its arrival)."""
        now, rid, tenant, tier, model, origin, prompt, output, inter, call, t_ix, flow = row
        req = Request(rid, tenant, tier, model, now, prompt, output, inter, call, origin)
        if flow is not None:
            self._flow_idx[flow] = self._flow_row[flow]
        dl = self._tier_deadline[t_ix]
        if dl is not None:
            req.deadline = now + dl
            req.lane = "deadline"
        self.rec.arrived(req)
        gw = self.gateway
        if call == 0 and (tenant in gw.tokens or tenant in gw.requests) and not gw.admit(
                tenant, float(prompt + output), call, now):
            self.rec.rejected(req, THROTTLED, now)  # a 429 at the ingress, counted
            return
        if dl is not None:
            heapq.heappush(self.deadline_q.setdefault(model, []), (req.deadline, rid, req))
            self._release_batch(model)
            return
        self._route(req)

    def _uniform(self) -> float:
        """The next ``rng.random()``, from a batch drawn at once: the same numbers, in the
        same order, as one call per request (see :meth:`_sync_rng`)."""
        if self._u_pos >= len(self._u_buf):
            self._u_state = self.rng.bit_generator.state
            self._u_buf = self.rng.random(_UNIFORM_BATCH).tolist()
            self._u_pos = 0
        u = self._u_buf[self._u_pos]
        self._u_pos += 1
        return u

    def _sync_rng(self) -> None:
        """Before any other draw from ``rng``: put the generator where the uniforms used so
        far leave it (each double of ``random`` is one 64-bit step of PCG64), dropping the
        rest of the batch, so the random stream is exactly that of one draw at a time."""
        if self._u_state is not None:
            bg = self.rng.bit_generator
            assert isinstance(bg, np.random.PCG64)  # default_rng's; advance() counts draws
            bg.state = self._u_state  # type: ignore[assignment]
            bg.advance(self._u_pos)
            self._u_state, self._u_buf, self._u_pos = None, [], 0

    def _region_for(self, req: Request) -> str:
        key = (req.model, req.tier, req.origin)
        if key in self._route_cache:
            got = self._route_cache[key]
        else:
            got = self._route_cache[key] = self._route_cdf(key)
        if got is None:
            return req.origin
        regions, cum = got
        return regions[bisect_left(cum, self._uniform())]  # np.searchsorted, side left

    def _route_cdf(self, key: tuple[str, str, str]) -> tuple[list[str], list[float]] | None:
        """The route's regions and cumulative fractions (None: stay at the origin)."""
        routes = self.target.routes.get(key)
        if not routes:
            return None
        regions = list(routes)
        w = np.array([max(routes[r], 0.0) for r in regions])
        if w.sum() <= 0:
            return None
        return regions, (np.cumsum(w) / w.sum()).tolist()

    def _eligible(self, req: Request, region: str) -> list[Replica]:
        """The ready replicas of ``region`` that may serve ``req`` (cached until the ready
        set or the target changes; callers must not change the list)."""
        spot_ok = self._spot_ok[req.tier]
        key = (req.model, region, spot_ok, req.lane)
        got = self._cands.get(key)
        if got is not None:
            return got
        reps = self.ready.get((req.model, region), [])
        lanes = self.target.pool_lanes
        lane = req.lane
        out = [
            r for r in reps
            if (spot_ok or self.pools[(r.key[1], r.key[2])].capacity_type != "spot")
            and lanes.get((r.key[1], r.key[2]), lane) == lane
        ]
        out = out or [r for r in reps if lanes.get((r.key[1], r.key[2]), lane) == lane]
        self._cands[key] = out
        return out

    def _ready_changed(self) -> None:
        """The ready set or the target changed: drop what was derived from them."""
        self._cands.clear()
        self._others_cache.clear()
        self._batch_cands.clear()

    def _route(self, req: Request) -> None:
        region = self._region_for(req) if self.target.routes else req.origin
        cands = self._cands.get((req.model, region, self._spot_ok[req.tier], req.lane))
        if cands is None:
            cands = self._eligible(req, region)
        if not cands:
            for other in self._others(req, region):
                cands = self._eligible(req, other)
                if cands:
                    break
        if not cands:
            self.pending.setdefault(req.model, deque()).append(req)
            return
        if len(cands) > 1:  # min(cands, key=load): the first of the least loaded
            loads = [c.held / c.cap for c in cands]
            rep = cands[loads.index(min(loads))]
        else:
            rep = cands[0]
        if self.target.spill and req.lane == "interactive":
            target = self._ttft_target.get(req.tier)
            if target is not None:
                rep = self._spill(req, rep, target)
        where = rep.key[1]
        if where != req.origin:
            req.net = self.rtt.get(req.origin, {}).get(where, 0.0) / 1000.0
        else:
            req.net = 0.0
        self._enqueue(rep, req)

    def _others(self, req: Request, region: str) -> list[str]:
        """The regions other than ``region`` with a ready replica of the request's model,
        nearest to its origin first."""
        key = (req.model, req.origin, region)
        got = self._others_cache.get(key)
        if got is None:
            rtt = self.rtt.get(req.origin, {})
            got = self._others_cache[key] = [r for _, r in sorted(
                (rtt.get(r, 1e9) if r != req.origin else 0.0, r)
                for (m, r), reps in self.ready.items() if m == req.model and reps and r != region
            )]
        return got

    def _spill(self, req: Request, rep: Replica, target: float) -> Replica:
        """``rep`` unless it would miss the tier's TTFT ``target`` and a replica of another
        region would meet it, round trip included (the nearest such region's least-waiting
        replica)."""
        now = self.now

        def ttft(r: Replica, net: float) -> float:
            p = r.profile
            return r.wait(now) + req.prompt_tokens / p.prefill + p.first_token_delay + net

        home = self.rtt.get(req.origin, {})
        if ttft(rep, home.get(rep.key[1], 0.0) / 1000.0 if rep.key[1] != req.origin else 0.0) \
                <= target:
            return rep
        for region in self._others(req, rep.key[1]):
            net = home.get(region, 1e9) / 1000.0 if region != req.origin else 0.0
            if net >= target:
                break
            cands = self._eligible(req, region)
            if not cands:
                continue
            best = min(cands, key=lambda r: r.wait(now))
            if ttft(best, net) <= target:
                self.rec.spilled(req)
                return best
        return rep

    def _enqueue(self, rep: Replica, req: Request) -> None:
        if len(rep.waiting) > self._queue_factor * rep.cap:
            self.rec.rejected(req, "queue-full", self.now)
            return
        if not rep.fcfs:
            reason = rep.scheduler.on_arrival(req, self.now)
            if reason is not None:
                self.rec.rejected(req, reason, self.now)
                return
        rep.waiting.append(req)
        rep.held += 1
        if req.lane == "interactive":
            rep.queued_prompt += req.prompt_tokens
        self._admit(rep)

    # ------------------------------------------------------------------ replica dynamics
    def _admit(self, rep: Replica) -> None:
        if rep.state not in ("ready", "draining"):
            return
        changed = False
        waiting = rep.waiting
        admitted = self.rec.admitted
        keep = self._keep
        now = self.now
        while waiting and rep.held - len(waiting) < rep.cap:
            if rep.fcfs:
                req = waiting[0]
                del waiting[0]
            else:
                pick = rep.scheduler.pick(waiting, now)
                if pick is None:
                    break
                req = pick  # type: ignore[assignment]  # the engine's own Requests
                assert isinstance(req, Request)
                waiting.remove(req)
            if keep:
                admitted(req, now)
            elif req.admitted_at != req.admitted_at:  # Recorder.admitted, inlined: NaN
                req.admitted_at = now
            (rep.prefill_q if req.lane == "interactive" else rep.prefill_bq).append(req)
            changed = True
        if changed and rep.prefilling is None:
            decode = rep.decode
            if decode:  # rep.advance(now), inlined
                n, floor = len(decode), rep.floor
                rep.v += (now - rep.v_time) * (rep.profile.decode / (floor if floor > n else n))
            rep.v_time = now
            self._start_prefill(rep)
            self._schedule(rep)

    def _start_prefill(self, rep: Replica) -> None:
        if rep.prefill_q:
            req = rep.prefill_q.popleft()
            rep.queued_prompt -= req.prompt_tokens
        elif rep.prefill_bq:
            req = rep.prefill_bq.popleft()
        else:
            return
        rep.prefilling = req
        rep.prefill_end = self.now + req.prompt_tokens / rep.profile.prefill

    def _schedule(self, rep: Replica) -> None:
        rep.epoch += 1
        if rep.prefilling is not None:
            t = rep.prefill_end
        elif rep.decode:
            # max(x, y) spelled out (``y if y > x else x``, the same value): no call
            left = rep.decode[0][0] - rep.v
            n, floor = len(rep.decode), rep.floor
            t = self.now + (0.0 if left < 0.0 else left) / (
                rep.profile.decode / (floor if floor > n else n))
        else:
            return
        self._seq += 1
        heapq.heappush(self._heap, (t, _REPLICA, self._seq, rep.epoch, rep))

    def _replica_event(self, rep: Replica) -> None:
        now = self.now
        decode = rep.decode
        if rep.prefilling is None and decode:  # rep.advance(now), inlined
            n, floor = len(decode), rep.floor
            rep.v += (now - rep.v_time) * (rep.profile.decode / (floor if floor > n else n))
        rep.v_time = now
        fcfs = rep.fcfs
        if rep.prefilling is not None and rep.prefill_end <= now + 1e-9:
            req = rep.prefilling
            rep.prefilling = None
            if self._keep:
                self.rec.first_token(req, now + rep.profile.first_token_delay + req.net)
            else:  # Recorder.first_token, inlined
                req.ttft = now + rep.profile.first_token_delay + req.net - req.arrival
            if not fcfs:
                rep.scheduler.on_service(req, float(req.prompt_tokens), 0.0, now)
            rep.served_tokens += req.prompt_tokens
            heapq.heappush(decode, (rep.v + req.output_tokens, req.id, req))
            rep.v_time = now
            self._start_prefill(rep)
        done = False
        if decode and rep.prefilling is None:
            completed = self.rec.completed
            pop = heapq.heappop
            v = rep.v + 1e-6
            while decode and decode[0][0] <= v:
                req = pop(decode)[2]
                rep.held -= 1
                if not fcfs:
                    rep.scheduler.on_service(req, 0.0, float(req.output_tokens), now)
                    rep.scheduler.on_finish(req, now)
                rep.served_tokens += req.output_tokens
                completed(req, now + req.net)
                done = True
        if done:
            if rep.state == "draining" and rep.held == 0:
                self._kill(rep)
                return
            self._admit(rep)
            model = rep.key[0]
            if (self.deadline_q.get(model)
                    and self.target.pool_lanes.get(rep.pool, "deadline") == "deadline"
                    and rep.held / rep.cap <= self._release_at):
                self._release_batch(model)
        if rep.prefilling is None and (rep.prefill_q or rep.prefill_bq):
            self._start_prefill(rep)
        rep.epoch += 1  # self._schedule(rep), inlined
        if rep.prefilling is not None:
            t = rep.prefill_end
        elif decode:
            left = decode[0][0] - rep.v
            n, floor = len(decode), rep.floor
            t = now + (0.0 if left < 0.0 else left) / (
                rep.profile.decode / (floor if floor > n else n))
        else:
            return
        self._seq += 1
        heapq.heappush(self._heap, (t, _REPLICA, self._seq, rep.epoch, rep))

    def _release_batch(self, model: str) -> None:
        q = self.deadline_q.get(model)
        if not q:
            return
        cands = self._batch_cands.get(model)
        if cands is None:
            lanes = self.target.pool_lanes
            cands = self._batch_cands[model] = [
                r for (m, _), reps in self.ready.items() if m == model for r in reps
                if lanes.get((r.key[1], r.key[2]), "deadline") == "deadline"
            ]
        lim = self.cfg.batch_release_utilization
        while q and cands:
            loads = [c.held / c.cap for c in cands]  # min(cands, key=load)
            least = min(loads)
            if least > lim:
                break
            rep = cands[loads.index(least)]
            _, _, req = heapq.heappop(q)
            self._enqueue(rep, req)

    # ------------------------------------------------------------------ lifecycle
    def _became_ready(self, rep: Replica) -> None:
        rep.state = "ready"
        rep.v_time = self.now
        self.rec.loaded(rep.profile.gpus, self.now - rep.start_load)
        self.ready.setdefault(rep.key[:2], []).append(rep)
        self._ready_changed()
        pend = self.pending.pop(rep.key[0], None)
        while pend:
            self._route(pend.popleft())
        self._release_batch(rep.key[0])

    def _start_load(self, rep: Replica) -> None:
        if rep.state == "waiting-node":
            rep.state = "loading"
            rep.start_load = self.now
            self._push(self.now + rep.profile.load_seconds, _REPLICA_READY, 0, rep)

    def _kill(self, rep: Replica) -> list[Request]:
        """Remove ``rep``; return the requests it held (not yet finished)."""
        held: list[Request] = []
        if rep.state in ("ready", "draining"):
            lst = self.ready.get(rep.key[:2], [])
            if rep in lst:
                lst.remove(rep)
                self._ready_changed()
        held += rep.waiting
        held += list(rep.prefill_q)
        held += list(rep.prefill_bq)
        if rep.prefilling is not None:
            held.append(rep.prefilling)
        held += [r for _, _, r in rep.decode]
        for r in held:
            rep.scheduler.on_finish(r, self.now)
        rep.waiting, rep.prefill_q, rep.prefilling, rep.decode = [], deque(), None, []
        rep.prefill_bq, rep.queued_prompt, rep.held = deque(), 0.0, 0
        rep.state = "dead"
        rep.epoch += 1
        self.replicas[rep.key].remove(rep)
        if rep.node is not None and rep in rep.node.replicas:
            rep.node.replicas.remove(rep)
        return held

    def _interrupt(self, node: Node) -> None:
        self.rec.spot_interruption()
        node.alive = False
        self.nodes[(node.region, node.pool)].remove(node)
        self.rec.node_count(node.region, node.pool, len(self.nodes[(node.region, node.pool)]),
                            self.now)
        for rep in list(node.replicas):
            for req in self._kill(rep):
                self._retry(req, "spot-interruption")
        self._reconcile()

    def _retry(self, req: Request, why: str) -> None:
        req.retries += 1
        self.rec.retried(req, why)
        if req.retries > self.cfg.max_retries:
            self.rec.rejected(req, "retry-limit", self.now)
        elif req.lane == "deadline":
            heapq.heappush(self.deadline_q.setdefault(req.model, []), (req.deadline, req.id, req))
        else:
            self._route(req)

    # ------------------------------------------------------------------ control
    def _apply(self, target: FleetTarget) -> None:
        self.target = target
        self._route_cache.clear()
        self._ready_changed()
        if target.throttles is not None:
            self.gateway.update(target.throttles, self.now)
        self._reconcile()

    def _reconcile(self) -> None:
        want = self.target.replicas
        keys = set(want) | {k for k, v in self.replicas.items() if v}
        for key in sorted(keys):
            n = max(int(want.get(key, 0)), 0)
            if key not in self.profiles:
                if n > 0:
                    raise ValueError(
                        f"policy {self.policy.name!r} wants {n} replicas of {key}: model "
                        f"{key[0]!r} cannot run in pool {key[2]!r} of region {key[1]!r} "
                        "(no profile for its GPU type, or region not allowed)"
                    )
                continue
            live = [r for r in self.replicas.get(key, []) if r.state != "draining"]
            if len(live) < n:
                # revive draining ones first
                for r in self.replicas.get(key, []):
                    if r.state == "draining" and len(live) < n:
                        r.state = "ready"
                        self.ready.setdefault(key[:2], []).append(r)
                        self._ready_changed()
                        live.append(r)
                for _ in range(n - len(live)):
                    self._start_replica(key)
            elif len(live) > n:
                order = {"waiting-node": 0, "loading": 1, "ready": 2}
                victims = sorted(live, key=lambda r: (order[r.state], r.load))[: len(live) - n]
                for r in victims:
                    self.rec.scaling_action()
                    if r.state == "ready":
                        r.state = "draining"
                        lst = self.ready.get(key[:2], [])
                        if r in lst:
                            lst.remove(r)
                            self._ready_changed()
                        moved, r.waiting = r.waiting, []
                        r.held -= len(moved)
                        r.queued_prompt = float(sum(q.prompt_tokens for q in r.prefill_q))
                        for q in moved:
                            r.scheduler.on_finish(q, self.now)
                            self._route(q)
                        if r.slots == 0:
                            self._kill(r)
                    else:
                        self._kill(r)
        self._fit_nodes()

    def _start_replica(self, key: ReplicaKey) -> None:
        prof = self.profiles[key]
        rep = Replica(self._new_id(), key, prof, self.new_scheduler())
        self.replicas.setdefault(key, []).append(rep)
        self.rec.scaling_action()
        pool = (key[1], key[2])
        node = next((nd for nd in self.nodes[pool] if nd.free_gpus >= prof.gpus), None)
        if node is None:
            node = self._add_node(pool)
            if node is None:
                self.replicas[key].remove(rep)
                self.rec.capacity_shortfall()
                return
        rep.node = node
        node.replicas.append(rep)
        if self._warm:
            rep.state, rep.start_load = "loading", self.now
            self._became_ready(rep)
        elif node.ready_at <= self.now:
            self._start_load(rep)

    def _new_id(self) -> int:
        self._ids += 1
        return self._ids

    def _add_node(self, pool: PoolKey) -> Node | None:
        p = self.pools[pool]
        if len(self.nodes[pool]) >= p.max_nodes:
            return None
        spot = p.capacity_type == "spot"
        delay = 0.0 if self._warm else float(p.provisioning_seconds)
        node = Node(self._new_id(), pool[0], pool[1], p.gpus_per_node, spot, self.now + delay)
        self.nodes[pool].append(node)
        self.rec.node_count(pool[0], pool[1], len(self.nodes[pool]), self.now)
        if not self._warm:
            self._push(node.ready_at, _NODE_READY, 0, node)
        if spot and (p.spot_interruption_rate_per_hour or pool in self.storms):
            life = self._spot_life(pool)
            if math.isfinite(life):
                self._push(self.now + life, _SPOT, 0, node)
        return node

    def _spot_life(self, pool: PoolKey) -> float:
        """Seconds from now until a new node of the spot ``pool`` is interrupted (inf:
        never), drawn under the pool's hazard (module doc: spot storms)."""
        base = self.pools[pool].spot_interruption_rate_per_hour or 0.0
        windows = self.storms.get(pool)
        self._sync_rng()
        if not windows:  # the draw of before storms existed (same random stream)
            return float(self.rng.exponential(3600.0 / base))
        return spot_interruption_delay(float(self.rng.exponential(1.0)), self.now, base,
                                       windows)

    def _fit_nodes(self) -> None:
        wanted = self.target.nodes
        for pool, nodes in self.nodes.items():
            p = self.pools[pool]
            floor = p.min_nodes if wanted is None else max(p.min_nodes, wanted.get(pool, 0))
            while len(nodes) < floor:
                if self._add_node(pool) is None:
                    break
            empty = [nd for nd in nodes if not nd.replicas]
            for nd in reversed(empty):
                if len(nodes) <= floor:
                    break
                nd.alive = False
                nodes.remove(nd)
                self.rec.node_count(pool[0], pool[1], len(nodes), self.now)

    # ------------------------------------------------------------------ observation
    def _tick(self) -> None:
        for key, reps in self.replicas.items():
            busy = [r.slots / r.profile.max_seqs for r in reps if r.state == "ready"]
            acc = self._tick_busy.setdefault(key, [0.0, 0.0])
            acc[0] += sum(busy)
            acc[1] += len(busy)
        now = self.now
        limit = self.cfg.pending_timeout_seconds
        for q in self.pending.values():
            while q and now - q[0].arrival > limit:
                self.rec.rejected(q.popleft(), "no-replica-timeout", now)
        for model in list(self.deadline_q):
            self._release_batch(model)
        self.rec.sample(now, self.nodes, self.replicas)

    def _observe(self) -> Observation:
        done = int(self.now // self.step)
        if self._hist_cache is None or self._hist_cache[0] != done:
            self._hist_cache = (done, MappingProxyType(self._history(done)))
        hist = self._hist_cache[1]
        return self._stats(hist)

    def _history(self, done: int) -> dict[FlowKey, DemandHistory]:
        """Demand per flow over the complete steps ``[0, done)`` plus the prior history."""
        wl = self.wl
        hist: dict[FlowKey, DemandHistory] = {}
        pre_steps = round((wl.start_unix - wl.history_start_unix) / self.step)
        keys = set(self._flow_idx)
        prior = {
            (wl.models.index(m), wl.regions.index(o), wl.tiers.index(t)): h
            for (m, o, t), h in wl.history.items()
        }
        keys |= set(prior)
        for key in keys:
            f = self._flow_idx.get(key)
            live = (self._hist[f, :done] / self.step) if f is not None else np.zeros((done, 3))
            past = prior.get(key)
            if past is None or past.shape[0] != pre_steps or pre_steps == 0:
                past = np.zeros((pre_steps, 3))
            series = np.concatenate([past, live]) if pre_steps else live
            if series.shape[0] == 0:
                continue
            fk = FlowKey(model=wl.models[key[0]], origin=wl.regions[key[1]],
                         tier=wl.tiers[key[2]])
            peaks = None
            if self._per:
                live_peaks = (self._peaks(f, done) if f is not None
                              else np.zeros((done, 3)))
                both = np.concatenate([np.full((pre_steps, 3), math.nan), live_peaks])
                peaks = _rates_of(both)
            hist[fk] = DemandHistory(
                key=fk, start=wl.history_start_unix, step_seconds=self.step,
                rates=_rates_of(series), peaks=peaks,
            )
        return hist

    def _peaks(self, row: int, done: int) -> np.ndarray:
        """Per complete step of flow ``row``, the rates of its busiest ``peak_seconds``: a
        window sliding by a minute, at each minute's end inside the step (the first
        windows reach into the step before, as a Prometheus subquery's do)."""
        fine = self._fine[row, : done * self._per]
        w = max(self.peak_seconds // PEAK_RESOLUTION_SECONDS, 1)
        cs = np.concatenate([np.zeros((1, 3)), np.cumsum(fine, axis=0)])
        ends = np.arange(1, fine.shape[0] + 1)
        sliding = (cs[ends] - cs[np.maximum(ends - w, 0)]) / (w * PEAK_RESOLUTION_SECONDS)
        out: np.ndarray = sliding.reshape(done, self._per, 3).max(axis=1) if done else \
            np.zeros((0, 3))
        return out

    def _stats(self, hist: Mapping[FlowKey, DemandHistory]) -> Observation:
        wl = self.wl
        span = max(self.now - self._last_obs, 1e-9)
        stats: dict[ReplicaKey, ReplicaStats] = {}
        for rkey, reps in self.replicas.items():
            acc = self._tick_busy.get(rkey, [0.0, 0.0])
            tokens = sum(r.served_tokens for r in reps)
            prev = self._tick_tokens.get(rkey, 0.0)
            self._tick_tokens[rkey] = tokens
            stats[rkey] = ReplicaStats(
                ready=sum(r.state == "ready" for r in reps),
                loading=sum(r.state in ("loading", "waiting-node") for r in reps),
                busy=acc[0] / acc[1] if acc[1] else 0.0,
                waiting=sum(len(r.waiting) for r in reps),
                tokens_per_s=max(tokens - prev, 0.0) / span,
            )
        self._tick_busy = {}
        self._last_obs = self.now
        backlog: dict[tuple[str, str], float] = {}
        for model, q in self.deadline_q.items():
            for _, _, r in q:
                k = (model, r.tier)
                backlog[k] = backlog.get(k, 0.0) + r.prompt_tokens + r.output_tokens
        window = float(getattr(self.policy, "react_seconds", 0.0) or 0.0)
        return Observation(
            now=self.now, start_unix=wl.start_unix, step_seconds=self.step, history=hist,
            nodes={k: len(v) for k, v in self.nodes.items()}, replicas=stats,
            backlog_tokens=backlog, tenant_usage=self._usage(),
            recent=self._recent(window), recent_seconds=window,
        )

    def _recent(self, window: float) -> dict[FlowKey, tuple[float, float, float]]:
        """Per flow, the requests, prompt and output tokens per second that arrived in
        ``[now - window, now)`` (throttled ones included: what the gateway counts), from the
        stream's current and previous chunks (arrivals sorted); nothing later."""
        out: dict[FlowKey, tuple[float, float, float]] = {}
        if window <= 0:
            return out
        lo, hi = self.now - window, self.now
        acc: dict[tuple[int, int, int], list[float]] = {}
        names: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None
        for c in self._recent_chunks:
            a, b = np.searchsorted(c.arrival, [lo, hi], side="left")
            if b <= a:
                continue
            names = (c.models, c.regions, c.tiers)
            flows = np.stack([c.model[a:b], c.origin[a:b], c.tier[a:b]], axis=1)
            keys, inv = np.unique(flows, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            n = np.bincount(inv, minlength=len(keys))
            pt = np.bincount(inv, weights=c.prompt[a:b].astype(float), minlength=len(keys))
            ot = np.bincount(inv, weights=c.output[a:b].astype(float), minlength=len(keys))
            for j, k in enumerate(keys):
                cell = acc.setdefault((int(k[0]), int(k[1]), int(k[2])), [0.0, 0.0, 0.0])
                cell[0] += float(n[j])
                cell[1] += float(pt[j])
                cell[2] += float(ot[j])
        if names is None:
            return out
        for (m, o, t), (n_, p_, o_) in acc.items():
            fk = FlowKey(model=names[0][m], origin=names[1][o], tier=names[2][t])
            out[fk] = (n_ / window, p_ / window, o_ / window)
        return out

    def _usage(self) -> dict[tuple[str, str, str], float]:
        """Tokens/s each (tenant, model, origin) sent over the last planning step (a rate
        over the step, as the controller's usage query reads it; over what has passed while
        the run is younger than a step)."""
        n = self.rec.arrived_n
        self._fold_sent(n)
        total = self._sent_total.tolist()
        self._sent = {k: total[j] for j, k in enumerate(self._use_keys) if self._use_first[j] < n}
        self._sent_at.append((self.now, dict(self._sent)))
        while len(self._sent_at) > 1 and self._sent_at[1][0] <= self.now - self.step:
            self._sent_at.popleft()
        t0, then = self._sent_at[0]
        span = self.now - t0 if self.now - t0 > 0 else 1.0
        return {k: (v - then.get(k, 0.0)) / span for k, v in self._sent.items()
                if v > then.get(k, 0.0)}

    def _holders(self) -> Iterator[Request]:
        for reps in self.replicas.values():
            for r in reps:
                yield from r.waiting
                yield from r.prefill_q
                yield from r.prefill_bq
                if r.prefilling is not None:
                    yield r.prefilling
                yield from (q for _, _, q in r.decode)
        for q in self.pending.values():
            yield from q
        for dq in self.deadline_q.values():
            yield from (r for _, _, r in dq)


def storm_windows(
    storms: Sequence[SpotStorm], pools: Mapping[PoolKey, NodePool]
) -> dict[PoolKey, list[tuple[float, float, float]]]:
    """Each spot pool's storm windows ``(start s, end s, rate per hour)`` in engine time;
    a storm without ``pool`` covers every spot pool of its region."""
    out: dict[PoolKey, list[tuple[float, float, float]]] = {}
    for i, st in enumerate(storms):
        keys = [k for k, p in pools.items() if k[0] == st.region
                and p.capacity_type == "spot" and (st.pool is None or k[1] == st.pool)]
        if not keys:
            what = f"spot pool {st.pool!r}" if st.pool else "spot pool"
            raise ValueError(f"engine.spot_storms[{i}]: no {what} in region {st.region!r}")
        a, b = st.window_seconds
        for k in keys:
            out.setdefault(k, []).append((a, b, st.rate_per_hour))
    return out


def spot_interruption_delay(
    e: float, now: float, base_per_hour: float,
    windows: Sequence[tuple[float, float, float]],
) -> float:
    """The ``s >= 0`` at which the cumulative hazard from ``now`` reaches ``e``:
    ``integral_{now}^{now+s} h(u) du / 3600 = e`` with ``h(u) = max(base, rates of the
    windows [a, b) holding u)`` per hour (piecewise constant). ``inf`` when the hazard is 0
    from some time on and ``e`` is not reached before."""
    edges = sorted({x for a, b, _ in windows for x in (a, b) if x > now})
    t, left = now, e
    for edge in [*edges, math.inf]:
        rate = max([base_per_hour] + [r for a, b, r in windows if a <= t < b])
        if rate > 0:
            dt = left * 3600.0 / rate
            if t + dt <= edge:
                return t + dt - now
            left -= (edge - t) * rate / 3600.0
        t = edge
    return math.inf


def _rates_of(series: np.ndarray) -> DemandRates:
    """Rows of (requests, prompt, output) per second as :class:`DemandRates`."""
    return DemandRates(
        requests_per_s=tuple(series[:, 0].tolist()),
        prompt_tokens_per_s=tuple(series[:, 1].tolist()),
        output_tokens_per_s=tuple(series[:, 2].tolist()),
    )
