"""Request synthesis from the public traces (seeded, vectorised, reproducible).

For a ServeGen client, window ``w`` (600 s) of its curve has rate ``lambda_w``, inter-arrival
CV and a fitted distribution (Gamma/Weibull/Exponential, shape ``k_w``). The twin runs the
client at ``s lambda_w`` (``s`` = workload scale x client scale) and keeps the burstiness:

1. gaps are drawn from the window's distribution normalised to mean 1 (Gamma(k, 1/k);
   Weibull(k) / Gamma(1 + 1/k); Exp(1)) and multiplied by ``1 / (s lambda_w)``;
2. the first arrival of a window is at ``U x gap`` after its start; arrivals past the
   window end are dropped (a renewal process restarted per window);
3. prompt/output lengths are drawn from the client's 6-hour length distribution of the
   arrival's block (the pool-wide one when the client's file or block is empty).

Clocks: the home region's local time drives the trace: trace time
``tau = start_day * 86400 + t + offset_region * 3600`` (mod 14 days): a client sends in its
region's local time what the trace shows at that hour (so a client 14 hours ahead sends the
same curve 14 hours earlier in UTC; where in the day it peaks is the trace client's own). Azure clients replay the hour-long trace on a loop,
keeping each row with probability ``s``.

History for the controller (``history_days`` before the start) is the expected demand of
the same curves (rate x mean lengths), never sampled arrivals of the simulated period.

**Routing** (scenario ``routing``, issue 13): each request of a routed tier (its client
names the tier's reference model) is given a model by the router's calibrated shares
(:class:`~llmfleet.routing.models.serving.TierShares`): option ``j`` (a model and ``n``
samples) with probability its request share ``r_j``, drawn per request from a generator of
its own (seeded by the workload's seed and the entry's ``seed``: the other draws are those
of the unrouted run, so routing on and off replay the same arrivals and lengths). The trace
request's lengths are what the reference would see; the routed one's prompt is
``prompt x p_j / r_j`` (``p_j``: the option's prompt-token share: the queries a model gets
are longer or shorter than the tier's mean) and its output ``output x n_j x o_j / r_j``
(``o_j``: its output share per sample; best-of-n decodes ``n`` answers, the prompt is
prefilled once), each rounded to a whole token (at least 1): so the tier's request, prompt
and per-sample output tokens are split as the shares say, in expectation. ``requested``
keeps the model the client named; ``model`` is the one that serves. The prior history of a
routed flow is split by the same factors (it is labelled with the serving model, as the
engine's history is).

**Streaming.** Requests are synthesised an hour at a time (:data:`CHUNK_SECONDS`), each
client from its own random stream (``SeedSequence(seed).spawn``), so the same seed gives the
same requests whether they are held in memory (:func:`build_workload`, for tests and small
runs) or replayed chunk by chunk (:func:`stream_workload`: memory bounded by one hour of
traffic however long the run; every pass over it synthesises the same requests again).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmfleet.api.references import FleetSnapshot
from llmfleet.routing.models.serving import TierShares
from llmfleet.sim.scenario import Scenario
from llmfleet.sim.traces import (
    LENGTH_BLOCK_SECONDS,
    WINDOW_SECONDS,
    AzureTrace,
    LengthDistribution,
    ServeGenPool,
    read_azure,
    read_servegen,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
TRACE_SECONDS = 14 * 86400
CHUNK_SECONDS = 3600.0


@dataclass(frozen=True)
class WorkloadMeta:
    """What a run's requests are about (names the request arrays index into) and the demand
    history a controller has at the start."""

    tenants: tuple[str, ...]
    models: tuple[str, ...]
    tiers: tuple[str, ...]
    regions: tuple[str, ...]
    duration: float
    start_unix: float
    history_start_unix: float
    history_step: int
    history: dict[tuple[str, str, str], FloatArray]
    """(model, origin, tier) -> array (steps, 3) of requests, prompt, output per second over
    the ``history_days`` before the start (expected rates of the curves)."""


@dataclass(frozen=True)
class Workload(WorkloadMeta):
    """Every request of a run (or of one chunk of it), sorted by arrival (struct of arrays)."""

    arrival: FloatArray
    tenant: IntArray
    model: IntArray
    tier: IntArray
    origin: IntArray
    prompt: IntArray
    output: IntArray
    interaction: IntArray | None = None
    """Interaction (agentic session) id per request; None: every request is its own."""
    call_index: IntArray | None = None
    """0 for an interaction's first call, 1, 2, ... for later ones (None: all 0)."""
    offset: int = 0
    """Id of the first request here (a chunk of a stream starts where the last one ended)."""
    requested: IntArray | None = None
    """The model the client named, where routing changed it (None: ``model`` everywhere)."""

    def __len__(self) -> int:
        return int(self.arrival.size)

    def chunks(self) -> Iterator[Workload]:
        """The requests in arrival order, a slice at a time (here: all at once)."""
        yield self


@dataclass(frozen=True)
class StreamingWorkload(WorkloadMeta):
    """A workload synthesised an hour at a time on every pass (see the module doc): requests
    only through :meth:`chunks`."""

    make_chunks: Callable[[], Iterator[Workload]] = field(repr=False)
    _count: list[int] = field(default_factory=list, repr=False)

    def chunks(self) -> Iterator[Workload]:
        return self.make_chunks()

    def __len__(self) -> int:
        """Requests in the run (one pass of synthesis the first time it is asked)."""
        if not self._count:
            self._count.append(sum(len(c) for c in self.chunks()))
        return self._count[0]


AnyWorkload = Workload | StreamingWorkload


def _unit_gaps(rng: np.random.Generator, dist: str, shape: float, n: int) -> FloatArray:
    if dist == "Gamma" and shape > 0:
        return rng.gamma(shape, 1.0 / shape, n)
    if dist == "Weibull" and shape > 0:
        out: FloatArray = rng.weibull(shape, n) / math.gamma(1.0 + 1.0 / shape)
        return out
    return rng.exponential(1.0, n)


def _lengths(
    rng: np.random.Generator, dists: tuple[LengthDistribution, ...],
    fallback: Callable[[], tuple[LengthDistribution, ...]], block: IntArray, default: int,
) -> IntArray:
    out = np.full(block.size, default, dtype=np.int64)
    for b in np.unique(block):
        idx = np.nonzero(block == b)[0]
        d = dists[b % len(dists)]
        if d.empty:
            pool = fallback()
            d = pool[b % len(pool)]
        if not d.empty:
            out[idx] = d.sample(rng, idx.size)
    return np.maximum(out, 1)


def _bounds(duration: float) -> list[tuple[float, float]]:
    n = max(math.ceil(duration / CHUNK_SECONDS), 1)
    return [(i * CHUNK_SECONDS, min((i + 1) * CHUNK_SECONDS, duration)) for i in range(n)]


Part = tuple[FloatArray, IntArray, IntArray]


def _servegen_client(
    rng: np.random.Generator, pool: ServeGenPool, chunk: int, scale: float,
    shift: float, duration: float,
) -> Iterator[Part]:
    """One client's requests, a chunk at a time: (arrival, prompt, output)."""
    c = pool.client(chunk)
    lw = pool.lengths(c)
    for t0, t1 in _bounds(duration):
        times: list[FloatArray] = []
        t = t0
        while t < t1:
            tau = (shift + t) % TRACE_SECONDS
            w = int(tau // WINDOW_SECONDS)
            end = min(t1, t + (WINDOW_SECONDS - (tau - w * WINDOW_SECONDS)))
            rate = float(c.rate[w]) * scale
            if rate > 0:
                span = end - t
                mean_gap = 1.0 / rate
                n = int(span * rate * 2 + 10)
                gaps = _unit_gaps(rng, str(c.dist[w]), float(c.p1[w]), n) * mean_gap
                gaps[0] *= rng.random()
                at = t + np.cumsum(gaps)
                times.append(at[at < end])
            t = end
        arr = np.concatenate(times) if times else np.zeros(0)
        block = (((shift + arr) % TRACE_SECONDS) // LENGTH_BLOCK_SECONDS).astype(np.int64)
        prompt = _lengths(rng, lw.input, lambda: pool.pool_lengths.input, block, 1000)
        output = _lengths(rng, lw.output, lambda: pool.pool_lengths.output, block, 250)
        yield arr, prompt, output


def _azure_client(
    rng: np.random.Generator, trace: AzureTrace, scale: float, duration: float
) -> Iterator[Part]:
    """The hour-long trace on a loop, each row kept with probability ``scale``."""
    period = float(np.ceil(trace.arrival_s[-1] + 1.0))
    for t0, t1 in _bounds(duration):
        reps = np.arange(int(t0 // period), int(np.ceil(t1 / period)))
        arr = (trace.arrival_s[None, :] + period * reps[:, None]).ravel()
        idx = np.tile(np.arange(len(trace)), reps.size)
        inside = (arr >= t0) & (arr < t1)
        arr, idx = arr[inside], idx[inside]
        keep = rng.random(arr.size) < min(scale, 1.0)
        yield arr[keep], trace.prompt_tokens[idx[keep]], trace.output_tokens[idx[keep]]


def build_workload(
    scenario: Scenario, snap: FleetSnapshot | None = None, traces: Path | str | None = None,
    days: float | None = None, seed: int | None = None,
    pools: dict[str, ServeGenPool] | None = None,
) -> Workload:
    """Synthesise every request of ``scenario`` into memory (deterministic for a seed; the
    same requests :func:`stream_workload` replays). ``pools`` is an optional caller-owned
    cache of parsed ServeGen pools (filled on use), so repeated builds skip re-reading the
    trace files."""
    st = stream_workload(scenario, snap, traces, days, seed, pools)
    parts = list(st.chunks())
    if not parts:
        raise ValueError("the workload has no chunk")

    def cat(name: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(p, name) for p in parts])

    return replace(
        parts[0], arrival=cat("arrival"), tenant=cat("tenant"), model=cat("model"),
        tier=cat("tier"), origin=cat("origin"), prompt=cat("prompt"), output=cat("output"),
        interaction=cat("interaction"), call_index=cat("call_index"), offset=0,
        requested=cat("requested") if parts[0].requested is not None else None,
    )


@dataclass(frozen=True)
class TierRoute:
    """A routed tier's options as index arrays of the workload (module doc, **Routing**)."""

    tier: int
    reference: int
    models: IntArray
    """Per option, the serving model's index."""
    cdf: FloatArray
    """Cumulative request shares (the last is 1)."""
    prompt_factor: FloatArray
    output_factor: FloatArray
    seed: int

    @staticmethod
    def of(ts: TierShares, tiers: tuple[str, ...], models: tuple[str, ...],
           seed: int) -> TierRoute:
        opts = [o for o in ts.options if o.requests > 0]
        r = np.array([o.requests for o in opts])
        return TierRoute(
            tier=tiers.index(ts.tier), reference=models.index(ts.reference),
            models=np.array([models.index(o.model) for o in opts], dtype=np.int64),
            cdf=np.cumsum(r) / r.sum(),
            prompt_factor=np.array([o.prompt_tokens for o in opts]) / r,
            output_factor=np.array([o.output_tokens * o.samples for o in opts]) / r,
            seed=seed,
        )

    def multipliers(self) -> dict[int, FloatArray]:
        """Serving model index -> factors of the reference flow's (requests, prompt,
        output) rates it gets (for the prior history)."""
        r = np.diff(self.cdf, prepend=0.0)
        out: dict[int, FloatArray] = {}
        for j, m in enumerate(self.models.tolist()):
            add = np.array([r[j], r[j] * self.prompt_factor[j], r[j] * self.output_factor[j]])
            out[m] = out.get(m, np.zeros(3)) + add
        return out


def route_requests(
    routes: Mapping[int, TierRoute], rngs: Mapping[int, np.random.Generator],
    tier: IntArray, model: IntArray, prompt: IntArray, output: IntArray,
) -> tuple[IntArray, IntArray, IntArray]:
    """(model, prompt, output) of the requests after routing (module doc, **Routing**)."""
    model, prompt, output = model.copy(), prompt.copy(), output.copy()
    for t, rt in routes.items():
        idx = np.nonzero((tier == t) & (model == rt.reference))[0]
        if idx.size == 0:
            continue
        j = np.minimum(np.searchsorted(rt.cdf, rngs[t].random(idx.size), side="right"),
                       rt.cdf.size - 1)
        model[idx] = rt.models[j]
        prompt[idx] = np.maximum(np.rint(prompt[idx] * rt.prompt_factor[j]), 1).astype(np.int64)
        output[idx] = np.maximum(np.rint(output[idx] * rt.output_factor[j]), 1).astype(np.int64)
    return model, prompt, output


def stream_workload(
    scenario: Scenario, snap: FleetSnapshot | None = None, traces: Path | str | None = None,
    days: float | None = None, seed: int | None = None,
    pools: dict[str, ServeGenPool] | None = None,
) -> StreamingWorkload:
    """The requests of ``scenario`` as a stream of hour-long chunks (see the module doc);
    the traces are read once, here, so a bad scenario fails before any replay."""
    snap = snap or scenario.snapshot()
    wl = scenario.workload
    duration = (days if days is not None else wl.days) * 86400.0
    base_seed = wl.seed if seed is None else seed
    regions = tuple(sorted(r.metadata.name for r in snap.regions))
    offsets = {r.metadata.name: r.spec.utc_offset_hours for r in snap.regions}
    models = tuple(sorted(m.metadata.name for m in snap.models))
    tiers = tuple(sorted(t.metadata.name for t in snap.tiers))
    quotas = {t.spec.tenant_id: t for t in snap.tenants}
    tenants = tuple(sorted({c.tenant for c in wl.clients}))
    pools = {} if pools is None else pools
    azure: dict[str, AzureTrace] = {}
    step = 3600
    hist_steps = wl.history_days * 24
    history: dict[tuple[str, str, str], FloatArray] = {}
    # (make the client's chunk iterator from its rng, tenant, model, tier, origin) per client
    clients: list[tuple[Callable[[np.random.Generator], Iterator[Part]], int, int, int, int]] = []
    for c in wl.clients:
        q = quotas[c.tenant]
        model = c.model or (q.spec.models[0] if q.spec.models else models[0])
        scale = wl.scale * c.scale
        shift = wl.start_day * 86400 + offsets[c.region] * 3600.0
        kind, _, ref = c.source.partition(":")
        key = (model, c.region, q.spec.tier)
        make: Callable[[np.random.Generator], Iterator[Part]]
        if kind == "servegen":
            pool_name, _, chunk = ref.partition("/")
            if pool_name not in pools:
                pools[pool_name] = read_servegen(pool_name, traces)
            pool = pools[pool_name]

            def make(rng: np.random.Generator, pool: ServeGenPool = pool, chunk: str = chunk,
                     scale: float = scale, shift: float = shift) -> Iterator[Part]:
                return _servegen_client(rng, pool, int(chunk), scale, shift, duration)

            if hist_steps:
                h = _history(pool, int(chunk), scale, shift, hist_steps, step)
                history[key] = history.get(key, 0.0) + h
        elif kind == "azure":
            if ref not in azure:
                azure[ref] = read_azure(ref, traces)  # type: ignore[arg-type]
            tr = azure[ref]

            def make(rng: np.random.Generator, tr: AzureTrace = tr,
                     scale: float = scale) -> Iterator[Part]:
                return _azure_client(rng, tr, scale, duration)

            if hist_steps:
                per_s = len(tr) / (tr.arrival_s[-1] + 1.0) * min(scale, 1.0)
                h = np.tile(
                    [per_s, per_s * tr.prompt_tokens.mean(), per_s * tr.output_tokens.mean()],
                    (hist_steps, 1),
                )
                history[key] = history.get(key, 0.0) + h
        else:
            raise ValueError(f"workload client source {c.source!r}: expected servegen:… or azure:…")
        clients.append((make, tenants.index(c.tenant), models.index(model),
                        tiers.index(q.spec.tier), regions.index(c.region)))
    routes = {
        rt.tier: rt for rt in (
            TierRoute.of(ts, tiers, models, r.seed) for r, ts in scenario.tier_shares()
            if r.enabled
        )
    }  # fmt: skip
    for rt in routes.values():
        for key in [k for k in history if k[2] == tiers[rt.tier] and k[0] == models[rt.reference]]:
            h = history.pop(key)
            for m, f in rt.multipliers().items():
                k2 = (models[m], key[1], key[2])
                history[k2] = history.get(k2, 0.0) + h * f[None, :]
    calls = {
        tenants.index(t): quotas[t].spec.application.calls_per_interaction for t in tenants
    }
    meta: dict[str, Any] = {
        "tenants": tenants, "models": models, "tiers": tiers, "regions": regions,
        "duration": duration, "start_unix": wl.start_unix,
        "history_start_unix": wl.start_unix - hist_steps * step, "history_step": step,
        "history": history,
    }

    def chunks() -> Iterator[Workload]:
        seqs = np.random.SeedSequence(base_seed).spawn(len(clients) + 1)
        gens = [make(np.random.default_rng(sq)) for (make, *_), sq in zip(clients, seqs, strict=False)]
        rng_calls = np.random.default_rng(seqs[-1])
        rng_route = {t: np.random.default_rng([base_seed, rt.seed, t, 13])
                     for t, rt in routes.items()}
        open_calls: dict[int, tuple[int, int]] = {}  # tenant -> (interaction id, next call)
        offset = 0
        for _ in _bounds(duration):
            parts = [next(g) for g in gens]
            arrival = np.concatenate([p[0] for p in parts])
            order = np.argsort(arrival, kind="stable")

            def col(i: int, parts: list[Part] = parts, order: IntArray = order) -> IntArray:
                return np.concatenate([
                    np.full(p[0].size, cl[i], dtype=np.int64)
                    for p, cl in zip(parts, clients, strict=True)
                ])[order]

            tenant_col = col(1)
            interaction, call_index = _interactions(rng_calls, tenant_col, calls, open_calls,
                                                    offset)
            model_col, tier_col = col(2), col(3)
            prompt = np.concatenate([p[1] for p in parts]).astype(np.int64)[order]
            output = np.concatenate([p[2] for p in parts]).astype(np.int64)[order]
            requested = None
            if routes:
                requested = model_col
                model_col, prompt, output = route_requests(
                    routes, rng_route, tier_col, model_col, prompt, output)
            yield Workload(
                arrival=arrival[order], tenant=tenant_col, model=model_col, tier=tier_col,
                origin=col(4), prompt=prompt, output=output,
                interaction=interaction, call_index=call_index, offset=offset,
                requested=requested, **meta,
            )
            offset += int(arrival.size)

    return StreamingWorkload(make_chunks=chunks, **meta)


def _history(
    pool: ServeGenPool, chunk: int, scale: float, shift: float, steps: int, step: int
) -> FloatArray:
    """Expected (requests, prompt, output)/s per ``step`` over the ``steps`` before t = 0."""
    c = pool.client(chunk)
    # the client's own 6-hour means (its overall mean where a block is empty); avoids the
    # pool-wide mixture, which parses every length file of the pool
    bi, bo = pool.lengths(c).means()
    per_block = LENGTH_BLOCK_SECONDS // WINDOW_SECONDS
    blocks = np.arange(c.rate.size) // per_block
    mi = np.nan_to_num(bi, nan=float(np.nanmean(bi)) if np.isfinite(bi).any() else 0.0)[
        np.minimum(blocks, bi.size - 1)]
    mo = np.nan_to_num(bo, nan=float(np.nanmean(bo)) if np.isfinite(bo).any() else 0.0)[
        np.minimum(blocks, bo.size - 1)]
    per = step // WINDOW_SECONDS
    out = np.zeros((steps, 3))
    for s in range(steps):
        t0 = shift - (steps - s) * step
        w = (((t0 + np.arange(per) * WINDOW_SECONDS) % TRACE_SECONDS) // WINDOW_SECONDS)
        w = w.astype(np.int64)
        r = c.rate[w] * scale
        out[s] = (r.mean(), (r * mi[w]).mean(), (r * mo[w]).mean())
    return out


def _interactions(
    rng: np.random.Generator, tenant: IntArray, calls: dict[int, float],
    open_calls: dict[int, tuple[int, int]], offset: int,
) -> tuple[IntArray, IntArray]:
    """Group each tenant's consecutive requests into interactions of geometric size with
    mean ``callsPerInteraction`` (its application profile); ids are the first call's global
    index. ``open_calls`` carries each tenant's interaction under way across chunks."""
    n = tenant.size
    interaction = np.arange(offset, offset + n, dtype=np.int64)
    call_index = np.zeros(n, dtype=np.int64)
    for u, mean in calls.items():
        if mean <= 1.0:
            continue
        idx = np.nonzero(tenant == u)[0]
        if idx.size == 0:
            continue
        starts = rng.random(idx.size) < 1.0 / mean  # a new interaction begins here
        carried = open_calls.get(u)
        if carried is None:
            starts[0] = True
        group = np.cumsum(starts) - 1  # -1: still the carried interaction
        first_ids = offset + idx[np.nonzero(starts)[0]]
        first_pos = np.nonzero(starts)[0]
        pos = np.arange(idx.size)
        mine = group >= 0
        interaction[idx[mine]] = first_ids[group[mine]]
        call_index[idx[mine]] = pos[mine] - first_pos[group[mine]]
        if carried is not None and (~mine).any():
            interaction[idx[~mine]] = carried[0]
            call_index[idx[~mine]] = carried[1] + pos[~mine]
        last = idx.size - 1
        open_calls[u] = (int(interaction[idx[last]]), int(call_index[idx[last]]) + 1)
    return interaction, call_index
