r"""``llmfleet bench fairness``: the fair schedulers side by side on ServeGen per-client traces.

The benchmark replays tenants on **one model replica**, on one of two engines
(``--engine``), both calling the same :class:`~llmfleet.fairness.scheduling.Scheduler`
hook:

* ``mini`` (default): the minimal continuous-batching server here, :func:`serve`, with
  closed-loop agents (call ``j + 1`` leaves when call ``j`` finishes);
* ``twin``: one replica of the fleet's digital twin (:class:`llmfleet.sim.engine.Engine`),
  :func:`run_scenario_twin`, the calls open-loop, measured from the hook calls alone.

The mini server, tenants and capacity:

1. **Server.** ``slots`` sequences at most. Each iteration admits waiting requests into free
   slots (asking the scheduler, :meth:`pick`), prefills them at ``prefill_tps`` tokens/s,
   then decodes one token for every running sequence in ``iter_base + iter_per_seq * batch``
   seconds. Served tokens are reported to the scheduler at admission (the prompt), every
   ``report_every`` output tokens and at completion.
2. **Tenants.** Each tenant replays one ServeGen client (``m-small``) over a slice of its
   14 days: per 600 s window its rate (rescaled so the tenant's mean is its target), gaps
   Gamma-distributed with the window's CV, prompt/output lengths from the client's
   distributions (capped). An agentic tenant sends ``calls`` calls per interaction; call
   ``j + 1`` is sent ``think`` seconds after call ``j`` finishes (the interaction ends if a
   call is throttled).
3. **Capacity.** ``mu = L / (L_in / P + L_out * t(S) / S)`` tokens/s at full batch ``S``
   (``t(S)`` the iteration time, ``L`` mean tokens of a call); a tenant's *share* is its
   weighted share of ``mu`` (what :func:`llmfleet.fairness.limits.compute_limits` calls the
   entitlement). Each tenant's TenantQuota declares its calls' mean prompt and output
   lengths as its application profile; RPM limits are the entitlement in calls per minute,
   FairServe's throttling limits are :func:`~llmfleet.fairness.limits.compute_limits` of
   the plan for the tenants' mean offered load.

Metrics (service = weighted served tokens, ``(prompt + 2 * output) / weight``, counted as
reported, sampled every ``sample_dt`` seconds; a tenant is *backlogged* at a sample when it
had a request waiting throughout the interval since the previous sample — at both samples,
and its queue never ran empty in between, even for an instant, as in VTC's definition):

* **Jain** — mean over 60 s windows of Jain's index ``(sum r)^2 / (n sum r^2)`` of the
  tenants' weighted service rates *while backlogged together with another tenant*
  (:func:`mean_jain`): 1 when every tenant that competes for the replica gets the same
  weighted rate while it competes (ideal weighted fair sharing), ``1/n`` when one takes
  everything; only windows in which >= 2 tenants competed count;
* **max diff** — the largest ``|S_i(t1, t2) - S_j(t1, t2)|`` over intervals in which both
  ``i`` and ``j`` are backlogged (VTC's measure; its bound is ``2 * max request cost``);
* **p95 TTFT** of the well-behaved tenants (offered load at most their share, not bursty),
  over the SLO; **throughput** (tokens/s), **utilisation** (mean share of busy slots),
  **throttled** requests (rejected by the scheduler at arrival) and **abandoned** ones
  (waited longer than ``queue_timeout``).

Each scenario runs ``--seeds`` workloads (default 3); the table shows each scheduler's mean
figures with ratios to FCFS, then the goal line (:func:`goal`): each threshold beside its
measured figure with a pass/miss mark, then MET or NOT MET. The goal: :data:`GOAL_SCHEDULER`
(FairServe) at least as fair as VTC and fairer than RPM (:data:`AS_FAIR_AS`,
:data:`FAIRER_THAN`: max service difference and Jain index), at equal or better throughput
than both, with the well-behaved tenants' p95 TTFT within :data:`MAX_WELL_BEHAVED_TTFT_OVER_SLO`
times the SLO.
"""

from __future__ import annotations

import argparse
import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llmfleet.api.tenant import TenantQuota
from llmfleet.fairness.limits import PoolCapacity, Usage, compute_limits
from llmfleet.fairness.schedulers import SCHEDULERS, make_scheduler
from llmfleet.fairness.scheduling import RequestView, Scheduler
from llmfleet_bench.targets import MISS, PASS

W_PROMPT = 1.0
W_OUTPUT = 2.0


@dataclass(frozen=True, eq=False)
class Call:
    """One LLM call (satisfies :class:`~llmfleet.fairness.scheduling.RequestView`)."""

    id: int
    tenant: str
    arrival: float
    prompt_tokens: int
    output_tokens: int
    interaction: int
    call_index: int
    tier: str = "interactive"
    model: str = "m-small"


@dataclass(frozen=True)
class Interaction:
    """A user interaction: ``len(calls)`` calls, the first at ``start``."""

    id: int
    tenant: str
    start: float
    calls: tuple[tuple[int, int], ...]
    """(prompt, output) tokens per call."""
    think: float = 0.5


@dataclass(frozen=True)
class ServerConfig:
    slots: int = 32
    prefill_tps: float = 8000.0
    iter_base: float = 0.012
    iter_per_seq: float = 0.0004
    report_every: int = 16
    sample_dt: float = 1.0
    queue_timeout: float = 120.0
    """A request waiting longer is abandoned by its client (and its interaction ends)."""

    def iter_time(self, batch: int) -> float:
        return self.iter_base + self.iter_per_seq * batch

    def capacity(self, mean_in: float, mean_out: float) -> float:
        """(3) tokens/s at full batch for calls of the given mean lengths."""
        per_call = mean_in / self.prefill_tps + mean_out * self.iter_time(self.slots) / self.slots
        return (mean_in + mean_out) / per_call


@dataclass
class Outcome:
    """What :func:`serve` measured."""

    duration: float
    times: list[float]
    service: dict[str, list[float]]
    """tenant -> cumulative weighted service at each sample time."""
    backlogged: dict[str, list[bool]]
    ttft: dict[str, list[float]]
    served_tokens: float
    busy_slot_seconds: float
    slots: int
    throttled: dict[str, int]
    timed_out: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    busy: list[int] = field(default_factory=list)
    """Sequences in the iteration that ended at or before each sample time."""
    idle_while_waiting: int = 0
    """Iterations that left a slot free while a request waited (0 when work-conserving)."""
    weights: dict[str, float] = field(default_factory=dict)


def serve(
    interactions: Iterable[Interaction],
    scheduler: Scheduler,
    config: ServerConfig,
    *,
    weights: Mapping[str, float] | None = None,
    until: float | None = None,
) -> Outcome:
    """(1) Run one replica over the interactions with ``scheduler``; see the module doc."""
    w = dict(weights or {})
    inters = {i.id: i for i in interactions}
    pending: list[tuple[float, int, int, int]] = []  # (arrival, seq, interaction, call index)
    seq = 0
    for i in inters.values():
        heapq.heappush(pending, (i.start, seq, i.id, 0))
        seq += 1
    tenants = sorted({i.tenant for i in inters.values()})
    service = dict.fromkeys(tenants, 0.0)
    out = Outcome(
        duration=0.0,
        times=[],
        service={t: [] for t in tenants},
        backlogged={t: [] for t in tenants},
        ttft={t: [] for t in tenants},
        served_tokens=0.0,
        busy_slot_seconds=0.0,
        slots=config.slots,
        throttled=dict.fromkeys(tenants, 0),
        weights={t: w.get(t, 1.0) for t in tenants},
    )
    waiting: list[Call] = []
    queued: dict[str, int] = defaultdict(int)
    emptied: set[str] = set()  # tenants whose queue ran empty since the last sample
    was: set[str] = set()  # tenants with a request waiting at the last sample
    running: dict[int, list[int]] = {}  # id -> [decoded, unreported]
    calls: dict[int, Call] = {}
    now = 0.0
    next_sample = 0.0
    next_id = 0
    end = until if until is not None else math.inf

    def credit(c: Call, prompt: float, output: float) -> None:
        scheduler.on_service(c, prompt, output, now)
        service[c.tenant] += (W_PROMPT * prompt + W_OUTPUT * output) / out.weights[c.tenant]
        out.served_tokens += prompt + output

    batch = 0  # sequences in the iteration just run

    def sample() -> None:
        nonlocal next_sample
        while next_sample <= now:
            out.times.append(next_sample)
            out.busy.append(batch)
            for t in tenants:
                out.service[t].append(service[t])
                out.backlogged[t].append(queued[t] > 0 and t in was and t not in emptied)
            emptied.clear()
            was.clear()
            was.update(t for t in tenants if queued[t] > 0)
            next_sample += config.sample_dt

    while now < end and (pending or waiting or running):
        if not waiting and not running and pending[0][0] > now:
            now = min(pending[0][0], end)
            batch = 0
            sample()
            if now >= end:
                break
        while pending and pending[0][0] <= now:
            t_arr, _, iid, k = heapq.heappop(pending)
            inter = inters[iid]
            p, o = inter.calls[k]
            c = Call(next_id, inter.tenant, t_arr, p, max(1, o), iid, k)
            next_id += 1
            if scheduler.on_arrival(c, now) is not None:
                out.throttled[c.tenant] += 1
                continue
            calls[c.id] = c
            waiting.append(c)
            queued[c.tenant] += 1
        while waiting and waiting[0].arrival < now - config.queue_timeout:
            gone = waiting.pop(0)  # the client gave up; its interaction ends
            queued[gone.tenant] -= 1
            if not queued[gone.tenant]:
                emptied.add(gone.tenant)
            calls.pop(gone.id)
            out.timed_out[gone.tenant] += 1
            scheduler.on_finish(gone, now)
        prefill = 0.0
        while waiting and len(running) < config.slots:
            c2 = scheduler.pick(waiting, now)
            if c2 is None:
                out.idle_while_waiting += 1
                break
            waiting.remove(c2)  # type: ignore[arg-type]
            call = calls[c2.id]
            queued[call.tenant] -= 1
            if not queued[call.tenant]:
                emptied.add(call.tenant)
            running[call.id] = [0, 0]
            prefill += call.prompt_tokens / config.prefill_tps
            out.ttft[call.tenant].append(now + prefill - call.arrival)
            credit(call, call.prompt_tokens, 0)
        if not running:  # the scheduler left every slot idle: wait for the next arrival
            if not pending:
                break
            now = max(now, min(pending[0][0], end))
            batch = 0
            sample()
            if now >= end:
                break
            continue
        # Nothing changes the batch until a sequence finishes, a report is due, or a request
        # arrives: advance n iterations at once.
        it = config.iter_time(len(running))
        n = min(
            min(calls[cid].output_tokens - st[0], config.report_every - st[1])
            for cid, st in running.items()
        )
        if pending:
            n = min(n, max(1, int((pending[0][0] - now - prefill) / it) + 1))
        if waiting:
            n = min(n, max(1, int((waiting[0].arrival + config.queue_timeout - now) / it) + 1))
        dt = prefill + n * it
        now += dt
        batch = len(running)
        out.busy_slot_seconds += len(running) * dt
        done: list[int] = []
        for cid, st in running.items():
            st[0] += n
            st[1] += n
            call = calls[cid]
            if st[0] >= call.output_tokens:
                credit(call, 0, st[1])
                done.append(cid)
            elif st[1] >= config.report_every:
                credit(call, 0, st[1])
                st[1] = 0
        for cid in done:
            del running[cid]
            call = calls.pop(cid)
            scheduler.on_finish(call, now)
            inter = inters[call.interaction]
            if call.call_index + 1 < len(inter.calls):
                heapq.heappush(pending, (now + inter.think, seq, inter.id, call.call_index + 1))
                seq += 1
        sample()
    out.duration = now
    return out


# ------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class Figures:
    jain: float
    max_diff: float
    p95_ttft_well: float
    throughput: float
    utilisation: float
    throttled: int
    timed_out: int


def jain_index(values: Sequence[float]) -> float:
    s = sum(values)
    q = sum(v * v for v in values)
    return 1.0 if q == 0 else s * s / (len(values) * q)


def mean_jain(out: Outcome, window: float = 60.0) -> float:
    """Mean over ``window``-second windows of Jain's index of the tenants' weighted service
    *rates while backlogged under contention* (see the module docstring).

    Sample interval ``k`` is ``[t_{k-1}, t_k]``; tenant ``i`` is *contended* in it when
    ``i`` and at least one other tenant were continuously backlogged over it
    (``backlogged[k]`` of both). In a window, ``r_i = sum_k dS_i(k) / n_i`` over the ``n_i``
    intervals where ``i`` is contended — what a tenant receives per second while it wants
    more and competes for it (weighted by ``1 / weight``, so under ideal weighted fair
    sharing every contended tenant's ``r_i`` is the same). A window counts when >= 2 tenants
    were contended in it; ``NaN`` when none does (no two tenants ever wait together).
    """
    n = len(out.times)
    if n < 2:
        return math.nan
    per = max(1, round(window / max(out.times[1] - out.times[0], 1e-9)))
    names = list(out.service)
    vals: list[float] = []
    for a in range(1, n, per):
        got = dict.fromkeys(names, 0.0)
        cnt = dict.fromkeys(names, 0)
        for k in range(a, min(a + per, n)):
            contended = [t for t in names if out.backlogged[t][k]]
            if len(contended) < 2:
                continue
            for t in contended:
                got[t] += out.service[t][k] - out.service[t][k - 1]
                cnt[t] += 1
        rates = [got[t] / cnt[t] for t in names if cnt[t]]
        if len(rates) >= 2:
            vals.append(jain_index(rates))
    return float(np.mean(vals)) if vals else math.nan


def max_service_difference(out: Outcome, pairs: Iterable[tuple[str, str]] | None = None) -> float:
    """Largest service difference between two tenants over an interval in which both were
    continuously backlogged (``backlogged`` true at every sample of it)."""
    names = sorted(out.service)
    todo = (
        pairs
        if pairs is not None
        else [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    )
    best = 0.0
    for a, b in todo:
        sa, sb = out.service[a], out.service[b]
        ba, bb = out.backlogged[a], out.backlogged[b]
        lo = hi = None
        for k in range(len(out.times)):
            if ba[k] and bb[k]:
                d = sa[k] - sb[k]
                lo = d if lo is None else min(lo, d)
                hi = d if hi is None else max(hi, d)
                best = max(best, hi - lo)
            else:
                lo = hi = None
    return best


def figures(out: Outcome, well_behaved: Sequence[str], slo_ttft: float) -> Figures:
    ttfts = [x for t in well_behaved for x in out.ttft.get(t, [])]
    p95 = float(np.percentile(ttfts, 95)) if ttfts else 0.0
    dur = max(out.duration, 1e-9)
    return Figures(
        jain=mean_jain(out),
        max_diff=max_service_difference(out),
        p95_ttft_well=p95 / slo_ttft,
        throughput=out.served_tokens / dur,
        utilisation=out.busy_slot_seconds / (dur * out.slots),
        throttled=sum(out.throttled.values()),
        timed_out=sum(out.timed_out.values()),
    )


# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class TenantSpec:
    name: str
    weight: float
    load: float
    """Offered load as a multiple of the tenant's weighted share of capacity."""
    calls: int = 1
    bursty: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    tenants: tuple[TenantSpec, ...]

    def well_behaved(self) -> list[str]:
        return [t.name for t in self.tenants if t.load <= 1.0 and not t.bursty]


SCENARIOS: dict[str, Scenario] = {
    "abusive": Scenario(
        "abusive",
        (
            TenantSpec("abuser", 1, 10.0),
            TenantSpec("t1", 1, 0.6),
            TenantSpec("t2", 1, 0.6),
            TenantSpec("t3", 2, 0.6),
            TenantSpec("t4", 1, 0.5),
        ),
    ),
    "bursty": Scenario(
        "bursty",
        (
            TenantSpec("burst1", 1, 1.5, bursty=True),
            TenantSpec("burst2", 1, 1.5, bursty=True),
            TenantSpec("t1", 1, 0.6),
            TenantSpec("t2", 2, 0.6),
            TenantSpec("t3", 1, 0.6),
        ),
    ),
    "agentic": Scenario(
        "agentic",
        (
            TenantSpec("agent1", 1, 6.0, calls=4),
            TenantSpec("agent2", 1, 0.6, calls=4),
            TenantSpec("t1", 1, 0.6),
            TenantSpec("t2", 2, 0.6),
            TenantSpec("t3", 1, 0.6),
        ),
    ),
}


@dataclass(frozen=True)
class ClientShape:
    """A ServeGen client's slice: relative rate and CV per 600 s window, length samplers."""

    rel_rate: np.ndarray
    cv: np.ndarray
    sample_lengths: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def servegen_shapes(
    n: int, start_s: int, duration: float, seed: int, max_in: int, max_out: int
) -> list[ClientShape]:
    """(2) ``n`` of the busiest m-small clients, their curves over the slice."""
    from llmfleet.sim.traces import WINDOW_SECONDS, read_servegen

    pool = read_servegen("m-small")
    w0 = start_s // WINDOW_SECONDS
    nw = max(1, math.ceil(duration / WINDOW_SECONDS))
    cands = [c for c in pool.clients if c.rate[w0 : w0 + nw].min() > 0]
    cands.sort(key=lambda c: -c.requests)
    if len(cands) < n:
        raise ValueError(f"only {len(cands)} m-small clients are active over the slice")
    shapes = []
    for c in cands[:n]:
        r = c.rate[w0 : w0 + nw]
        lw = pool.lengths(c)
        blk = int(np.searchsorted(lw.block_start_s, start_s, side="right") - 1)
        din, dout = lw.input[max(blk, 0)], lw.output[max(blk, 0)]
        if din.empty or dout.empty:
            lw = pool.pool_lengths
            din, dout = lw.input[max(blk, 0)], lw.output[max(blk, 0)]

        def sampler(
            rng: np.random.Generator, k: int, din: object = din, dout: object = dout
        ) -> tuple[np.ndarray, np.ndarray]:
            i = np.minimum(din.sample(rng, k), max_in)  # type: ignore[attr-defined]
            o = np.minimum(dout.sample(rng, k), max_out)  # type: ignore[attr-defined]
            return np.maximum(i, 1), np.maximum(o, 1)

        shapes.append(ClientShape(r / r.mean(), np.clip(c.cv[w0 : w0 + nw], 0.2, 5.0), sampler))
    return shapes


def synth(
    scenario: Scenario,
    shapes: Sequence[ClientShape],
    config: ServerConfig,
    duration: float,
    seed: int,
) -> tuple[list[Interaction], dict[str, tuple[float, float]], float]:
    """Interactions of the scenario; returns (interactions, tenant -> (mean prompt, mean
    output) tokens of a call, mu)."""
    rng = np.random.default_rng(seed)
    probe = [s.sample_lengths(rng, 2000) for s in shapes]
    mean_in = float(np.mean([p[0].mean() for p in probe]))
    mean_out = float(np.mean([p[1].mean() for p in probe]))
    mu = config.capacity(mean_in, mean_out)
    wsum = sum(t.weight for t in scenario.tenants)
    out: list[Interaction] = []
    lengths: dict[str, tuple[float, float]] = {}
    nid = 0
    for spec, shape, (pi, po) in zip(scenario.tenants, shapes, probe, strict=False):
        lengths[spec.name] = (float(pi.mean()), float(po.mean()))
        share = mu * spec.weight / wsum
        calls_per_s = spec.load * share / sum(lengths[spec.name])
        inter_rate = calls_per_s / spec.calls
        t = 0.0
        win = 600.0
        while t < duration:
            k = min(int(t // win), len(shape.rel_rate) - 1)
            lam = inter_rate * shape.rel_rate[k]
            if spec.bursty:  # on 60 s of every 300 s at 5x, off otherwise (same mean)
                lam *= 5.0 if (t % 300.0) < 60.0 else 0.0
                if lam == 0.0:
                    t = (t // 300.0 + 1) * 300.0
                    continue
            cv = float(shape.cv[k])
            shp = 1.0 / (cv * cv)
            t += float(rng.gamma(shp, 1.0 / (shp * lam)))
            if t >= duration:
                break
            ins, outs = shape.sample_lengths(rng, spec.calls)
            out.append(
                Interaction(
                    nid,
                    spec.name,
                    t,
                    tuple((int(a), int(b)) for a, b in zip(ins, outs, strict=True)),
                )
            )
            nid += 1
    out.sort(key=lambda i: i.start)
    return out, lengths, mu


def quotas_for(scenario: Scenario, lengths: Mapping[str, tuple[float, float]]) -> list[TenantQuota]:
    """Each tenant's TenantQuota; its application profile is its calls' mean lengths."""
    docs = []
    for t in scenario.tenants:
        mean_in, mean_out = lengths[t.name]
        q = TenantQuota.new(
            t.name,
            {
                "tenantId": t.name,
                "tier": "interactive",
                "weight": t.weight,
                "application": {
                    "meanInputTokens": mean_in,
                    "meanSystemTokens": 0,
                    "meanOutputTokens": mean_out,
                    "callsPerInteraction": t.calls,
                },
            },
        )
        docs.append(q)
    return docs


def run_scenario(
    scenario: Scenario,
    *,
    duration: float,
    seed: int,
    config: ServerConfig,
    schedulers: Sequence[str] = SCHEDULERS,
    slo_ttft: float = 2.0,
    shapes: Sequence[ClientShape] | None = None,
) -> dict[str, Figures]:
    if shapes is None:
        shapes = servegen_shapes(
            len(scenario.tenants), 86400 + 14 * 3600, duration, seed, 4096, 1024
        )
    inters, lengths, mu = synth(scenario, shapes, config, duration, seed)
    per_call = {t: sum(x) for t, x in lengths.items()}
    quotas = quotas_for(scenario, lengths)
    weights = {t.name: t.weight for t in scenario.tenants}
    wsum = sum(weights.values())
    pool = PoolCapacity("m-small", "r", "interactive", mu, config.slots)
    usage = [Usage(t.name, "m-small", "r", t.load * mu * t.weight / wsum) for t in scenario.tenants]
    table = compute_limits(quotas, [pool], usage)
    limits = {p.tenant: p.tokens_per_second for p in table.pools}
    ent = {p.tenant: p.entitlement for p in table.pools}
    rpm = {t: ent[t] / per_call[t] * 60.0 for t in ent}
    out: dict[str, Figures] = {}
    for name in schedulers:
        sch = make_scheduler(name, quotas, rpm=rpm, limits=limits, overload_waiting=config.slots)
        res = serve(inters, sch, config, weights=weights, until=duration)
        out[name] = figures(res, scenario.well_behaved(), slo_ttft)
    return out


ROWS: tuple[tuple[str, str, str], ...] = (
    ("jain", "Jain (weighted service, backlogged)", "{:.3f}"),
    ("max_diff", "max service difference (tokens)", "{:,.0f}"),
    ("p95_ttft_well", "p95 TTFT well-behaved / SLO", "{:.2f}"),
    ("throughput", "throughput (tokens/s)", "{:,.0f}"),
    ("utilisation", "utilisation (busy slots)", "{:.2f}"),
    ("throttled", "requests throttled", "{:,}"),
    ("timed_out", "requests abandoned (mini: queued > 120 s; twin: rejected)", "{:,}"),
)


def render(scenario: str, figs: Mapping[str, Figures]) -> str:
    names = list(figs)
    base = figs.get("fcfs")
    lines = [
        f"## {scenario}",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key, label, fmt in ROWS:
        cells = []
        for n in names:
            v = getattr(figs[n], key)
            if isinstance(v, float) and math.isnan(v):
                cells.append("n/a")
                continue
            cell = fmt.format(v)
            if base is not None and n != "fcfs":
                b = getattr(base, key)
                cell += f" ({v / b:.2f}x)" if b and not math.isnan(b) else " (-)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_figures(runs: Sequence[Mapping[str, Figures]]) -> dict[str, Figures]:
    """Each scheduler's figures averaged over runs (seeds); NaNs are skipped."""

    def avg(xs: Sequence[float]) -> float:
        ok = [x for x in xs if not math.isnan(x)]
        return float(np.mean(ok)) if ok else math.nan

    out: dict[str, Figures] = {}
    for name in runs[0]:
        fs = [r[name] for r in runs]
        out[name] = Figures(
            jain=avg([f.jain for f in fs]),
            max_diff=avg([f.max_diff for f in fs]),
            p95_ttft_well=avg([f.p95_ttft_well for f in fs]),
            throughput=avg([f.throughput for f in fs]),
            utilisation=avg([f.utilisation for f in fs]),
            throttled=round(float(np.mean([f.throttled for f in fs]))),
            timed_out=round(float(np.mean([f.timed_out for f in fs]))),
        )
    return out


GOAL_SCHEDULER = "fairserve"
"""The scheduler the goal is about."""
AS_FAIR_AS = "vtc"
"""The goal scheduler's max service difference <= this one's, its Jain index >=, its
throughput >=."""
FAIRER_THAN = "rpm"
"""The goal scheduler's max service difference < this one's, its Jain index >, its
throughput >=."""
MAX_WELL_BEHAVED_TTFT_OVER_SLO = 1.0
"""The well-behaved tenants' p95 TTFT over the SLO, at most."""


def goal(
    figs: Mapping[str, Figures],
    runs: Sequence[Mapping[str, Figures]] = (),
    scheduler: str = GOAL_SCHEDULER,
) -> tuple[bool, str]:
    """The goal on one scenario's figures: ``scheduler`` at least as fair as
    :data:`AS_FAIR_AS` (max service difference <=, Jain >=) and fairer than
    :data:`FAIRER_THAN` (max difference <, Jain >), at equal or better throughput than both,
    with the well-behaved tenants' p95 TTFT within :data:`MAX_WELL_BEHAVED_TTFT_OVER_SLO`
    times the SLO. Strict comparisons of the printed figures (the means over ``runs``); a
    missing (NaN) Jain fails its comparison. With several runs the line also gives the
    per-seed differences to :data:`AS_FAIR_AS`, to tell a real gap from seed-to-seed noise.
    Returns (met, one line: each threshold beside the measured figure, ``pass`` or
    ``MISS``)."""
    eq, gt = AS_FAIR_AS, FAIRER_THAN
    f, v, r = figs.get(scheduler), figs.get(eq), figs.get(gt)
    if f is None or v is None or r is None:
        return False, f"goal: not evaluated (needs {scheduler}, {eq} and {gt})"

    def per_seed(key: str, fmt: str) -> str:
        if len(runs) < 2:
            return ""
        ds = [getattr(x[scheduler], key) - getattr(x[eq], key) for x in runs]
        return " (per seed " + ", ".join(fmt.format(d) for d in ds) + ")"

    ttft = MAX_WELL_BEHAVED_TTFT_OVER_SLO
    checks = (
        (
            f"max diff {f.max_diff:,.0f} <= {eq} {v.max_diff:,.0f}"
            + per_seed("max_diff", "{:+,.0f}"),
            f.max_diff <= v.max_diff,
        ),
        (f"< {gt} {r.max_diff:,.0f}", f.max_diff < r.max_diff),
        (f"Jain {f.jain:.3f} >= {eq} {v.jain:.3f}" + per_seed("jain", "{:+.3f}"), f.jain >= v.jain),
        (f"> {gt} {r.jain:.3f}", f.jain > r.jain),
        (
            f"throughput {f.throughput:,.0f} >= {eq} {v.throughput:,.0f}",
            f.throughput >= v.throughput,
        ),
        (f">= {gt} {r.throughput:,.0f}", f.throughput >= r.throughput),
        (f"well-behaved p95 TTFT {f.p95_ttft_well:.2f} x SLO <= {ttft:g}", f.p95_ttft_well <= ttft),
    )
    met = all(ok for _, ok in checks)
    parts = "; ".join(f"{text}: {PASS if ok else MISS}" for text, ok in checks)
    return met, f"goal ({scheduler} vs {eq}, {gt}): {'MET' if met else 'NOT MET'} — {parts}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmfleet bench fairness", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="scenario(s) to run (default: all)",
    )
    ap.add_argument("--duration", type=float, default=1200.0, help="simulated seconds")
    ap.add_argument(
        "--engine",
        choices=("mini", "twin"),
        default="mini",
        help="mini: the one-replica server here (closed-loop agents, default); twin: one "
        "replica of the fleet simulator (llmfleet.sim.engine)",
    )
    ap.add_argument("--seed", type=int, default=0, help="first workload seed")
    ap.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="workloads per scenario (seeds seed, seed+1, ...); the table shows the means",
    )
    ap.add_argument("--slo-ttft", type=float, default=2.0, help="TTFT p95 SLO, seconds")
    args = ap.parse_args(argv)
    cfg = ServerConfig()
    shapes: dict[int, list[ClientShape]] = {}
    for name in args.scenario or list(SCENARIOS):
        sc = SCENARIOS[name]
        n = len(sc.tenants)
        if n not in shapes:
            shapes[n] = servegen_shapes(n, 86400 + 14 * 3600, args.duration, args.seed, 4096, 1024)
        runs: list[dict[str, Figures]] = []
        for seed in range(args.seed, args.seed + max(1, args.seeds)):
            if args.engine == "twin":
                runs.append(
                    run_scenario_twin(
                        sc,
                        duration=args.duration,
                        seed=seed,
                        slo_ttft=args.slo_ttft,
                        shapes=shapes[n],
                    )
                )
            else:
                runs.append(
                    run_scenario(
                        sc,
                        duration=args.duration,
                        seed=seed,
                        config=cfg,
                        slo_ttft=args.slo_ttft,
                        shapes=shapes[n],
                    )
                )
        figs = mean_figures(runs)
        seeds = f"seed {args.seed}" if len(runs) == 1 else f"mean of seeds {args.seed}-{seed}"
        print(render(f"{name} ({args.engine}, {seeds})", figs))
        print()
        print(goal(figs, runs)[1])
        print()
    return 0



# ------------------------------------------------------------------ on the fleet twin


class _Recording:
    """Wraps a scheduler and records what the metrics need from the hook calls alone, so
    any engine calling the hook can be measured (used with :mod:`llmfleet.sim.engine`)."""

    def __init__(self, inner: Scheduler, weights: Mapping[str, float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.weights = weights
        self.events: list[tuple[float, str, float, int]] = []  # (t, tenant, service, dqueue)
        self.ttft: dict[str, list[float]] = defaultdict(list)
        self.throttled: dict[str, int] = defaultdict(int)
        self._queued: set[int] = set()
        self._prefilled: set[int] = set()

    def on_arrival(self, request: RequestView, now: float) -> str | None:
        reason = self.inner.on_arrival(request, now)
        if reason is None:
            self._queued.add(request.id)
            self.events.append((now, request.tenant, 0.0, 1))
        else:
            self.throttled[request.tenant] += 1
        return reason

    def pick(self, waiting: Sequence[RequestView], now: float) -> RequestView | None:
        r = self.inner.pick(waiting, now)
        if r is not None and r.id in self._queued:
            self._queued.discard(r.id)
            self.events.append((now, r.tenant, 0.0, -1))
        return r

    def on_service(
        self, request: RequestView, prompt_tokens: float, output_tokens: float, now: float
    ) -> None:
        self.inner.on_service(request, prompt_tokens, output_tokens, now)
        if prompt_tokens > 0 and request.id not in self._prefilled:
            self._prefilled.add(request.id)
            self.ttft[request.tenant].append(now - request.arrival)
        w = self.weights.get(request.tenant, 1.0)
        cost = (W_PROMPT * prompt_tokens + W_OUTPUT * output_tokens) / w
        self.events.append((now, request.tenant, cost, 0))

    def on_finish(self, request: RequestView, now: float) -> None:
        self.inner.on_finish(request, now)
        if request.id in self._queued:  # dropped while waiting
            self._queued.discard(request.id)
            self.events.append((now, request.tenant, 0.0, -1))

    def outcome(self, tenants: Sequence[str], until: float, slots: int, dt: float) -> Outcome:
        ev = sorted(self.events, key=lambda e: e[0])
        service = dict.fromkeys(tenants, 0.0)
        queued = dict.fromkeys(tenants, 0)
        out = Outcome(
            duration=until,
            times=[],
            service={t: [] for t in tenants},
            backlogged={t: [] for t in tenants},
            ttft={t: list(self.ttft.get(t, [])) for t in tenants},
            served_tokens=0.0,
            busy_slot_seconds=0.0,
            slots=slots,
            throttled={t: self.throttled.get(t, 0) for t in tenants},
            weights={t: self.weights.get(t, 1.0) for t in tenants},
        )
        k = 0
        t = 0.0
        was: set[str] = set()
        while t <= until:
            emptied: set[str] = set()
            while k < len(ev) and ev[k][0] <= t:
                _, ten, cost, dq = ev[k]
                service[ten] += cost
                queued[ten] += dq
                if not queued[ten]:
                    emptied.add(ten)
                out.served_tokens += cost * out.weights[ten]
                k += 1
            out.times.append(t)
            for ten in tenants:
                out.service[ten].append(service[ten])
                out.backlogged[ten].append(queued[ten] > 0 and ten in was and ten not in emptied)
            was = {ten for ten in tenants if queued[ten] > 0}
            t += dt
        return out


def run_scenario_twin(
    scenario: Scenario,
    *,
    duration: float,
    seed: int,
    schedulers: Sequence[str] = SCHEDULERS,
    slo_ttft: float = 2.0,
    shapes: Sequence[ClientShape] | None = None,
    call_gap: float = 2.0,
) -> dict[str, Figures]:
    """The scenario on the fleet twin (:class:`llmfleet.sim.engine.Engine`): one replica of
    ``llama-3-1-8b`` on ``us-east/h100-od`` of the embedded default scenario, the tenants'
    calls open-loop (the engine pre-schedules arrivals: later calls of an interaction
    ``call_gap`` seconds apart). "served tokens" here are VTC-weighted (prompt + 2 x
    output) and utilisation is not measured (reported as NaN)."""
    from llmfleet.api.references import FleetSnapshot
    from llmfleet.sim.engine import Engine
    from llmfleet.sim.policy import FleetTarget, Observation
    from llmfleet.sim.scenario import load_scenario
    from llmfleet.sim.workload import Workload

    model, region, pool, tier = "llama-3-1-8b", "us-east", "h100-od", "interactive-fast"
    base = load_scenario()
    snap0 = base.snapshot()
    prof = next(
        p
        for m in snap0.models
        if m.metadata.name == model
        for p in m.spec.profiles
        if p.gpu_type == "H100-80GB"
    )
    if shapes is None:
        shapes = servegen_shapes(
            len(scenario.tenants), 86400 + 14 * 3600, duration, seed, 4096, 1024
        )
    # the replica's capacity: mu = L / (L_in / P + L_out / D)
    cfg = ServerConfig(
        slots=prof.max_concurrent_sequences,
        prefill_tps=prof.prefill_tokens_per_second,
        iter_base=0.0,
        iter_per_seq=1.0 / prof.decode_tokens_per_second,
    )
    inters, lengths, mu = synth(scenario, shapes, cfg, duration, seed)
    per_call = {t: sum(x) for t, x in lengths.items()}
    warm = 900.0  # node provisioning + model load before the replica serves
    rows = sorted(
        (i.start + warm + j * call_gap, i.tenant, p, o, i.id, j)
        for i in inters
        for j, (p, o) in enumerate(i.calls)
    )
    names = tuple(t.name for t in scenario.tenants)
    idx = {n: k for k, n in enumerate(names)}
    arr = np.array([r[0] for r in rows], dtype=np.float64)
    wl = Workload(
        arrival=arr,
        tenant=np.array([idx[r[1]] for r in rows], dtype=np.int64),
        model=np.zeros(len(rows), dtype=np.int64),
        tier=np.zeros(len(rows), dtype=np.int64),
        origin=np.zeros(len(rows), dtype=np.int64),
        prompt=np.array([r[2] for r in rows], dtype=np.int64),
        output=np.array([max(1, r[3]) for r in rows], dtype=np.int64),
        tenants=names,
        models=(model,),
        tiers=(tier,),
        regions=(region,),
        duration=warm + duration,
        start_unix=0.0,
        history_start_unix=0.0,
        history_step=3600,
        history={},
        interaction=np.array([r[4] for r in rows], dtype=np.int64),
        call_index=np.array([r[5] for r in rows], dtype=np.int64),
    )
    quotas = [
        q.model_copy(update={"spec": q.spec.model_copy(update={"tier": tier})})
        for q in quotas_for(scenario, lengths)
    ]
    snap = FleetSnapshot(
        regions=snap0.regions,
        models=snap0.models,
        tiers=snap0.tiers,
        tenants=quotas,
        policies=snap0.policies,
    )

    class Fixed:
        name = "fixed-one-replica"
        interval_seconds = 1e9

        def decide(self, obs: Observation) -> FleetTarget:
            return FleetTarget(
                replicas={(model, region, pool): 1},
                routes={(model, tier, region): {region: 1.0}},
            )

    weights = {t.name: t.weight for t in scenario.tenants}
    wsum = sum(weights.values())
    cap = PoolCapacity(model, region, tier, mu, cfg.slots)
    usage = [Usage(t.name, model, region, t.load * mu * t.weight / wsum) for t in scenario.tenants]
    table = compute_limits(quotas, [cap], usage)
    limits = {p.tenant: p.tokens_per_second for p in table.pools}
    rpm = {p.tenant: p.entitlement / per_call[p.tenant] * 60.0 for p in table.pools}
    out: dict[str, Figures] = {}
    for name in schedulers:
        made: list[_Recording] = []

        def factory(name: str = name, made: list[_Recording] = made) -> Scheduler:
            inner = make_scheduler(name, quotas, rpm=rpm, limits=limits, overload_waiting=cfg.slots)
            rec = _Recording(inner, weights)
            made.append(rec)
            return rec

        rec_engine = Engine(snap, wl, Fixed(), base.engine, scheduler_factory=factory, seed=seed)
        er = rec_engine.run()
        if not made:
            raise RuntimeError("the twin started no replica")
        res = made[0].outcome(list(names), warm + duration, cfg.slots, 1.0)
        res.duration = duration
        res.timed_out = defaultdict(int, {"engine-rejected": int(sum(er.reasons.values()))})
        f = figures(res, scenario.well_behaved(), slo_ttft)
        out[name] = Figures(
            jain=f.jain,
            max_diff=f.max_diff,
            p95_ttft_well=f.p95_ttft_well,
            throughput=f.throughput,
            utilisation=math.nan,
            throttled=f.throttled,
            timed_out=max(0, f.timed_out - f.throttled),  # the engine counts both
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
