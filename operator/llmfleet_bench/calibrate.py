"""``llmfleet bench calibrate``: one replica of the twin against llm-d's BLIS vLLM tables.

**Reference.** :mod:`llmfleet_bench.blis` reads ``benchmarks_BLIS.json`` from the PyPI
package ``llm-d-planner`` (vLLM v0.8.4 latencies produced by llm-d's BLIS simulator, trained
on measured vLLM runs). The configurations compared are those of the sample models
(``meta-llama/llama-3.1-8b-instruct``, ``meta-llama/llama-3.3-70b-instruct``) on each GPU
type of their profile, at the tensor-parallel degree equal to the profile's
``gpusPerReplica``. The profiles are the embedded default scenario's (the same numbers as
``crds/samples/models.yaml``), with its engine settings and ``capacity_scale = 1``: one
real replica, not a 1/k slice.

**Replay.** Each table point runs on one warm replica: Poisson arrivals at the point's
``requests_per_second``, prompt and output lengths drawn normal with the point's mean and
standard deviation (rounded, at least 1; ``--fixed-lengths`` uses the means), seeded. The
first :data:`WARMUP_FRACTION` of arrivals are a warm-up; the next
:data:`MEASURED_REQUESTS` are measured, and the run lasts until they are all done. Twin
figures over the measured requests: TTFT mean and p95; ITL mean, token-weighted,
``sum(e2e - ttft) / sum(L_out - 1)``; throughput, output tokens completed per second over
the measured arrivals' span.

**Saturation** is read from the table alone: a point is saturated when it serves less than
:data:`SATURATION_THROUGHPUT_RATIO` of its offered load (``responses_per_second /
requests_per_second``), or its TTFT mean or ITL mean exceeds
:data:`SATURATION_LATENCY_GROWTH` times the same configuration and shape's lowest-rate
point (latency exploding). Target (issue): every point below saturation within
:data:`TOLERANCE` (relative) on TTFT p95, TTFT mean, ITL mean and throughput.

**Fit** (``--fit``), per configuration, on its points below saturation, for the twin's
replica (module doc of :mod:`llmfleet.sim.engine`). Analytic first: ITL below the batch knee
is ``tau0 / (1 - rho)`` with ``tau0 = s C / D`` and ``rho = lambda L_in / P`` the share of
time decoding pauses for prefills; TTFT at low load is ``k tau0 + L_in / P``
(``k = engine.first_token_steps``). Starting from ``P = max L_in / TTFT``, three rounds of
``tau0 = exp(mean log(ITL (1 - rho)))`` and ``1/P`` minimising
``sum ((k tau0 + L_in/P - TTFT) / TTFT)^2`` (closed form). Then, because the twin's TTFT
tail carries prefill queueing the table does not have (below), ``P`` is searched over
:data:`FIT_PREFILL_FACTORS` x the analytic one, ``tau0`` refitted for each, by replaying the
points: the numbers with the smallest worst error win; ``D = s C / tau0`` (``C`` is the
profile's, ``s`` the engine's ``saturation_fraction``). A configuration the table lacks
gets numbers *derived* from a fitted GPU of the same model and another model's fitted ratio
between the two GPUs (printed, not applied).

**Where the twin and the table still differ, and why** (default scenario, seed 0):

* *The table has no queueing.* Its TTFT and ITL stay flat with the request rate until
  saturation (8B on 4 H100: TTFT 13.31/16.19/16.62 ms mean/p95/p99, bit-identical from 1 to
  26 req/s); its own metadata calls it synthetic, ``confidence_level: estimated``. The twin
  prefills one request at a time (an M/G/1 queue on prefill), so its TTFT p95 grows with
  load: +18% at 2 req/s of 4096-token prompts on one H100. To keep that within 25%, the fit
  sets the 8B/H100 ``P`` above the table's isolated-request slope (56,400 tokens/s against
  ~46,000 from its two prompt lengths), so the twin's 512-token TTFT is 17-18% low (18.1
  against 21.9 ms) and the planner's prefill capacity for that profile ~23%
  optimistic. A chunked-prefill replica (prefill chunks in the decode steps) would remove
  the trade; it is a larger engine change than this calibration.
* *TTFT intercept.* The table's TTFT is ``a + L_in / P`` with ``a`` = 1.18 unloaded decode
  steps on one H100 (10.8 against 9.15 ms) and 1.0 on four; the engine has one engine-wide
  ``k = 1``.
* *ITL under load*: the twin pauses every decoding sequence during a prefill, so ITL grows as
  ``1 / (1 - lambda L_in / P)``; in vLLM a prefill chunk lengthens a step a little. Within
  5% on every point here.
* *ITL with batch size*: the twin's ITL is flat up to ``s C`` sequences and linear beyond;
  BLIS's grows slowly and smoothly (8B on 4 H100: 6.05 ms at 1 sequence, 6.27 ms at ~180).
  The sample configurations' points hold at most ~15 sequences, so the knee is not tested
  and ``D`` (the planner's saturated throughput) is identified only through ``D = s C /
  tau0`` with the engine-wide ``s = 0.25``; BLIS's flat ITL up to ~180 sequences suggests a
  higher knee. A per-profile knee needs an LLMModel profile field; the engine keeps one
  ``saturation_fraction``.
* *Throughput*: the table's ``tokens_per_second`` is 2-7% below offered load even far from
  saturation (a finite run's tail, and the 70B's ``responses_per_second`` drifting to 0.955
  of offered at 2 req/s); the twin serves the offered load.
* *Coverage*: the table has no ``llama-3.3-70b`` point on A100-80 (only H100 x4 and x8) and
  a single 8B point on A100-80 x1 (512/256 tokens at 1 req/s); the 70B/A100 profile is not
  checked and was left as it was.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from llmfleet.api.loading import parse_object, snapshot_of
from llmfleet.api.references import FleetSnapshot
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE
from llmfleet.sim.policy import FleetTarget, Observation
from llmfleet.sim.scenario import EngineSpec, Scenario, load_scenario
from llmfleet.sim.workload import Workload
from llmfleet_bench.blis import BlisConfig, BlisPoint, BlisTable, BlisTableError, load_table
from llmfleet_bench.targets import MISS, PASS, Threshold

SAMPLE_MODELS = ("meta-llama/llama-3.1-8b-instruct", "meta-llama/llama-3.3-70b-instruct")
"""The table's names of the sample LLMModels (``servedModelName``, lower case)."""
GPU_TYPES = {"H100-80GB": "H100", "A100-80GB": "A100-80"}
"""LLMModel profile ``gpuType`` -> the table's ``hardware``."""
TOLERANCE = 0.25
"""Relative error allowed on every figure of every point below saturation (the issue)."""
SATURATION_THROUGHPUT_RATIO = 0.9
"""A point serving less than this share of its offered load is saturated."""
SATURATION_LATENCY_GROWTH = 1.25
"""A point whose TTFT or ITL mean exceeds this x its shape's lowest-rate point is saturated."""
WARMUP_FRACTION = 0.1
"""Share of arrivals replayed before the measured ones (the replica reaches steady state)."""
MEASURED_REQUESTS = 5000
"""Requests measured per point (default of ``--requests``)."""
ERROR_TARGET = Threshold(
    "worst relative error, points below saturation", TOLERANCE, fmt="{:.1%}"
)
FIT_PREFILL_FACTORS = tuple(1.0 + 0.05 * i for i in range(13))
"""``--fit`` tries the analytic prefill rate times each of these (1.0 .. 1.6)."""
FIT_REQUESTS = 2000
"""Measured requests per point while ``--fit`` searches."""
FIGURES = ("ttft_p95", "ttft_mean", "itl_mean", "throughput")
"""The compared figures, in print order."""

_API = "llmfleet.dev/v1alpha1"
_MODEL, _REGION, _POOL = "m", "r", "gpu"


@dataclass(frozen=True)
class Replica:
    """What one table configuration is replayed on: a profile and the engine settings."""

    model_doc: dict[str, Any]
    """The LLMModel document, reduced to the one profile."""
    gpu_type: str
    gpus: int
    engine: EngineSpec
    max_seqs: int
    prefill: float
    decode: float


@dataclass(frozen=True)
class TwinFigures:
    """The twin's figures of one point, in seconds and output tokens/s."""

    ttft_mean: float
    ttft_p95: float
    itl_mean: float
    throughput: float
    completed: int


@dataclass(frozen=True)
class Comparison:
    point: BlisPoint
    twin: TwinFigures
    saturated: bool

    def table(self) -> dict[str, float]:
        p = self.point
        return {"ttft_p95": p.ttft_p95 / 1e3, "ttft_mean": p.ttft_mean / 1e3,
                "itl_mean": p.itl_mean / 1e3, "throughput": p.tokens_per_second}

    def errors(self) -> dict[str, float]:
        """Relative error ``twin / table - 1`` per figure."""
        ref = self.table()
        got = {"ttft_p95": self.twin.ttft_p95, "ttft_mean": self.twin.ttft_mean,
               "itl_mean": self.twin.itl_mean, "throughput": self.twin.throughput}
        return {k: got[k] / ref[k] - 1.0 for k in FIGURES}

    def worst(self) -> float:
        return max(abs(e) for e in self.errors().values())


class _OneReplica:
    """Always one replica of the model in the one pool (warm at t = 0)."""

    name = "one-replica"
    interval_seconds = 1e9

    def decide(self, obs: Observation) -> FleetTarget:
        return FleetTarget(replicas={(_MODEL, _REGION, _POOL): 1}, routes={})


# ---------------------------------------------------------------------------- table side
def saturated(point: BlisPoint, table: BlisTable) -> bool:
    """Whether the table shows ``point`` at or past saturation (module doc)."""
    if point.responses_per_second < SATURATION_THROUGHPUT_RATIO * point.requests_per_second:
        return True
    same = [p for p in table.of(point.config) if p.shape == point.shape]
    base = min(same, key=lambda p: p.requests_per_second)
    return (point.ttft_mean > SATURATION_LATENCY_GROWTH * base.ttft_mean
            or point.itl_mean > SATURATION_LATENCY_GROWTH * base.itl_mean)


# ---------------------------------------------------------------------------- twin side
def replicas(scenario: Scenario | None = None) -> dict[BlisConfig, Replica]:
    """The sample models' profiles as table configurations (default: embedded scenario)."""
    sc = scenario or load_scenario()
    engine = sc.engine.model_copy(update={"capacity_scale": 1.0, "queue_limit_factor": 1e6})
    out: dict[BlisConfig, Replica] = {}
    for doc in sc.fleet:
        if doc.get("kind") != "LLMModel":
            continue
        name = str(doc["spec"]["servedModelName"]).lower()
        if name not in SAMPLE_MODELS:
            continue
        for prof in doc["spec"]["profiles"]:
            hw = GPU_TYPES.get(prof["gpuType"])
            if hw is None:
                continue
            one = copy.deepcopy(doc)
            one["metadata"] = {"name": _MODEL}
            one["spec"]["profiles"] = [prof]
            one["spec"].pop("allowedRegions", None)
            one["spec"]["minReplicasPerRegion"] = 0
            gpus = int(prof["gpusPerReplica"])
            out[BlisConfig(name, hw, gpus)] = Replica(
                one, prof["gpuType"], gpus, engine, int(prof["maxConcurrentSequences"]),
                float(prof["prefillTokensPerSecond"]), float(prof["decodeTokensPerSecond"]),
            )
    return out


def _snapshot(rep: Replica) -> FleetSnapshot:
    docs: list[dict[str, Any]] = [
        {"apiVersion": _API, "kind": "Region", "metadata": {"name": _REGION},
         "spec": {"location": "bench", "pools": [{
             "name": _POOL, "gpuType": rep.gpu_type, "gpusPerNode": max(8, rep.gpus),
             "pricePerNodeHour": 1.0, "maxNodes": 1, "provisioningSeconds": 0}]}},
        rep.model_doc,
        {"apiVersion": _API, "kind": "SLATier", "metadata": {"name": "t"},
         "spec": {"type": "interactive", "interactive": {"ttftP95Seconds": 60.0}}},
        {"apiVersion": _API, "kind": "TenantQuota", "metadata": {"name": "a"},
         "spec": {"tenantId": "a", "tier": "t", "models": [_MODEL]}},
        {"apiVersion": _API, "kind": "FleetPolicy", "metadata": {"name": "p"},
         "spec": {"intervalSeconds": 300, "horizon": {"stepSeconds": 300, "steps": 4}}},
    ]
    return snapshot_of(parse_object(d, namespace="default", where="calibrate") for d in docs)


def _lengths(rng: np.random.Generator, mean: float, sd: float, n: int) -> np.ndarray:
    x = np.rint(rng.normal(mean, sd, n)) if sd > 0 else np.full(n, round(mean))
    return np.maximum(x, 1).astype(np.int64)


def replay(point: BlisPoint, rep: Replica, requests: int = MEASURED_REQUESTS, seed: int = 0,
           fixed_lengths: bool = False) -> TwinFigures:
    """Replay ``point`` on one replica ``rep`` (module doc); ``requests`` measured."""
    rng = np.random.default_rng(seed)
    lam = point.requests_per_second
    warm = math.ceil(requests * WARMUP_FRACTION / (1 - WARMUP_FRACTION))
    n = warm + requests
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n))
    sd_in = 0.0 if fixed_lengths else point.prompt_tokens_stdev
    sd_out = 0.0 if fixed_lengths else point.output_tokens_stdev
    prompt = _lengths(rng, point.prompt_tokens, sd_in, n)
    output = _lengths(rng, point.output_tokens, sd_out, n)
    # long enough for every measured request to finish: the backlog at the last arrival,
    # served at the saturated rates, plus one request's full service
    work = float(prompt.sum()) / rep.prefill + float(output.sum()) / rep.decode
    longest = float(prompt.max()) / rep.prefill + float(output.max()) * rep.max_seqs / rep.decode
    duration = float(arrivals[-1]) + work + longest + 60.0
    zeros = np.zeros(n, dtype=np.int64)
    wl = Workload(
        arrival=arrivals, tenant=zeros, model=zeros, tier=zeros, origin=zeros,
        prompt=prompt, output=output, tenants=("a",), models=(_MODEL,), tiers=("t",),
        regions=(_REGION,), duration=duration, start_unix=0.0, history_start_unix=0.0,
        history_step=300, history={},
    )
    rec = Engine(_snapshot(rep), wl, _OneReplica(), rep.engine, seed=seed,
                 keep_requests=True).run()
    measured = np.arange(n) >= warm
    done = measured & (rec.status == DONE)
    if done.sum() < requests:
        raise RuntimeError(
            f"{point.config}: {requests - int(done.sum())} of {requests} measured requests "
            f"did not complete in {duration:.0f} s of simulated time"
        )
    ttft, e2e = rec.ttft[done], rec.e2e[done]
    gaps = (output[done] - 1).sum()
    span = float(arrivals[-1] - arrivals[warm])
    in_span = done & (rec.done_at >= arrivals[warm]) & (rec.done_at <= arrivals[-1])
    return TwinFigures(
        ttft_mean=float(ttft.mean()), ttft_p95=float(np.percentile(ttft, 95)),
        itl_mean=float((e2e - ttft).sum() / max(gaps, 1)),
        throughput=float(output[in_span].sum()) / span, completed=int(done.sum()),
    )


# ---------------------------------------------------------------------------- fit
@dataclass(frozen=True)
class Fit:
    """Profile numbers that make the twin's replica match a configuration (module doc)."""

    prefill: float
    """``prefillTokensPerSecond``."""
    decode: float
    """``decodeTokensPerSecond`` = ``s C / tau0``."""
    tau0: float
    """Seconds per decode step of an unloaded replica (the table's low-load ITL)."""
    worst: float = math.nan
    """Worst relative error of the replayed points with these numbers (``fit`` only)."""


def _tau0(points: Sequence[BlisPoint], prefill: float) -> float:
    """``exp(mean log(ITL (1 - rho)))``, ``rho = lambda L_in / P`` (capped at 0.9)."""
    lam = np.array([p.requests_per_second for p in points])
    lin = np.array([p.prompt_tokens for p in points])
    itl = np.array([p.itl_mean for p in points]) / 1e3
    rho = np.minimum(lam * lin / prefill, 0.9)
    return float(np.exp(np.log(itl * (1 - rho)).mean()))


def fit_analytic(points: Sequence[BlisPoint], max_seqs: int, saturation: float,
                 first_token_steps: float) -> Fit:
    """``P`` and ``D`` from the twin's low-load formulas (module doc), ``C = max_seqs``."""
    if not points:
        raise ValueError("fit: no points below saturation")
    lin = np.array([p.prompt_tokens for p in points])
    ttft = np.array([p.ttft_mean for p in points]) / 1e3
    prefill = float((lin / ttft).max())
    tau0 = float(np.array([p.itl_mean for p in points]).min()) / 1e3
    for _ in range(3):
        tau0 = _tau0(points, prefill)
        a, b = lin / ttft, (ttft - first_token_steps * tau0) / ttft
        prefill = float((a * a).sum() / max((a * b).sum(), 1e-12))
    return Fit(prefill, saturation * max_seqs / tau0, tau0)


def with_profile(rep: Replica, prefill: float, decode: float) -> Replica:
    """``rep`` with other prefill and decode tokens/s."""
    doc = copy.deepcopy(rep.model_doc)
    prof = doc["spec"]["profiles"][0]
    prof["prefillTokensPerSecond"], prof["decodeTokensPerSecond"] = prefill, decode
    return replace(rep, model_doc=doc, prefill=prefill, decode=decode)


def fit(points: Sequence[BlisPoint], rep: Replica, requests: int = FIT_REQUESTS,
        seed: int = 0) -> Fit:
    """The analytic fit, then ``P`` searched over :data:`FIT_PREFILL_FACTORS` x the analytic
    ``P`` (``tau0`` and ``D`` refitted for each) by replaying ``points`` on ``rep``: the
    numbers with the smallest worst relative error (module doc, *Fit*)."""
    s, c = rep.engine.saturation_fraction, rep.max_seqs
    base = fit_analytic(points, c, s, rep.engine.first_token_steps)
    best: Fit | None = None
    for f in FIT_PREFILL_FACTORS:
        prefill = _sig(base.prefill * f)
        tau0 = _tau0(points, prefill)
        decode = _sig(s * c / tau0)
        cand = with_profile(rep, prefill, decode)
        worst = max(Comparison(p, replay(p, cand, requests, seed), False).worst()
                    for p in points)
        if best is None or worst < best.worst - 1e-3:
            best = Fit(prefill, decode, s * c / decode, worst)
    assert best is not None
    return best


def derive(cfg: BlisConfig, rep: Replica, fits: dict[BlisConfig, Fit]) -> Fit | None:
    """Numbers for a configuration the table lacks: a fitted configuration of the same model
    on another GPU, scaled by another model's fitted ratio between the two GPUs (``P`` and
    ``tau0`` each by its ratio; ``D = s C / tau0`` with ``rep``'s ``C``); None if no such
    pair was fitted."""
    for same, f in fits.items():
        if same.model != cfg.model or same.hardware == cfg.hardware:
            continue
        for a, fa in fits.items():
            b = replace(a, hardware=cfg.hardware)
            if a.model == cfg.model or a.hardware != same.hardware or b not in fits:
                continue
            fb = fits[b]
            tau0 = f.tau0 * fb.tau0 / fa.tau0
            decode = _sig(rep.engine.saturation_fraction * rep.max_seqs / tau0)
            return Fit(_sig(f.prefill * fb.prefill / fa.prefill), decode, tau0)
    return None


def _sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant figures (profile numbers people can read)."""
    if x <= 0:
        return x
    return float(round(x, digits - 1 - math.floor(math.log10(x))))


# ---------------------------------------------------------------------------- CLI
def _row(c: Comparison) -> str:
    p, t, r, e = c.point, c.twin, c.table(), c.errors()
    state = "SATURATED" if c.saturated else "below"
    mark = "-" if c.saturated else (PASS if c.worst() <= TOLERANCE else MISS)
    return (
        f"  {p.prompt_tokens:>5.0f}/{p.output_tokens:<4.0f} {p.requests_per_second:>7.2f}"
        f"  {state:<9}"
        f"  ttft95 {t.ttft_p95 * 1e3:7.1f}/{r['ttft_p95'] * 1e3:7.1f} {e['ttft_p95']:+6.1%}"
        f"  ttft {t.ttft_mean * 1e3:7.1f}/{r['ttft_mean'] * 1e3:7.1f} {e['ttft_mean']:+6.1%}"
        f"  itl {t.itl_mean * 1e3:6.2f}/{r['itl_mean'] * 1e3:6.2f} {e['itl_mean']:+6.1%}"
        f"  tput {t.throughput:8.0f}/{r['throughput']:8.0f} {e['throughput']:+6.1%}  {mark}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="llmfleet bench calibrate",
        description="replay llm-d's BLIS vLLM table points on one replica of the twin",
    )
    ap.add_argument("--requests", type=int, default=MEASURED_REQUESTS,
                    help=f"measured requests per point (default {MEASURED_REQUESTS})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1,
                    help="replay every N-th point of each configuration and shape (default 1)")
    ap.add_argument("--fixed-lengths", action="store_true",
                    help="every request at the point's mean lengths (default: its spread)")
    ap.add_argument("--scenario", default=None,
                    help="scenario file whose profiles and engine settings are replayed "
                         "(default: the embedded default scenario)")
    ap.add_argument("--fit", action="store_true",
                    help="also print the profile numbers fitted to each configuration")
    args = ap.parse_args(argv)
    if args.requests < 100 or args.every < 1:
        ap.error("--requests must be >= 100 and --every >= 1")
    try:
        table = load_table()
    except BlisTableError as e:
        print(f"llmfleet bench calibrate: {e}", file=sys.stderr)
        return 1
    print(f"BLIS table: {len(table.points)} points, {len(table.configs())} configurations "
          f"({table.source}, llm-d-planner {table.version})")
    print("per point: prompt/output tokens, req/s, saturation (from the table), then "
          "twin/table and twin error: TTFT p95 and mean (ms), ITL mean (ms), throughput "
          "(output tokens/s)")
    t0 = time.perf_counter()
    results: list[Comparison] = []
    fits: dict[BlisConfig, Fit] = {}
    missing: list[tuple[BlisConfig, Replica]] = []
    for cfg, rep in replicas(load_scenario(args.scenario)).items():
        pts = table.of(cfg)
        head = (f"\n{cfg.model} on {cfg.hardware} x{cfg.tensor_parallel} (profile: P "
                f"{rep.prefill:,.0f}, D {rep.decode:,.0f}, C {rep.max_seqs}; engine s "
                f"{rep.engine.saturation_fraction}, first-token steps "
                f"{rep.engine.first_token_steps})")
        print(head)
        if not pts:
            near = [c for c in table.configs() if c.model == cfg.model]
            print("  no table points for this configuration; the table has "
                  + ", ".join(f"{c.hardware} x{c.tensor_parallel}" for c in near))
            missing.append((cfg, rep))
            continue
        below = [p for p in pts if not saturated(p, table)]
        if args.fit and below:
            fits[cfg] = fit(below, rep, seed=args.seed)
        shapes: dict[tuple[float, float], int] = {}
        for p in pts:
            k = shapes.get(p.shape, 0)
            shapes[p.shape] = k + 1
            if k % args.every:
                continue
            c = Comparison(p, replay(p, rep, args.requests, args.seed, args.fixed_lengths),
                           saturated(p, table))
            results.append(c)
            print(_row(c))
    if fits:
        print("\nfitted profile numbers (prefillTokensPerSecond, decodeTokensPerSecond; "
              "tau0 = s C / D):")
        for cfg, f in fits.items():
            print(f"  {cfg.model} {cfg.hardware} x{cfg.tensor_parallel}: P {f.prefill:,.0f}"
                  f"  D {f.decode:,.0f}  tau0 {f.tau0 * 1e3:.2f} ms  (worst error {f.worst:.1%})")
        for cfg, rep in missing:
            d = derive(cfg, rep, fits)
            if d is not None:
                print(f"  {cfg.model} {cfg.hardware} x{cfg.tensor_parallel}: P {d.prefill:,.0f}"
                      f"  D {d.decode:,.0f}  tau0 {d.tau0 * 1e3:.2f} ms  (derived: no table "
                      "points; another model's ratio between the GPUs)")
    below_sat = [c for c in results if not c.saturated]
    ok = [c for c in below_sat if c.worst() <= TOLERANCE]
    worst = max((c.worst() for c in below_sat), default=math.nan)
    print(f"\n{len(results)} points replayed in {time.perf_counter() - t0:.1f} s; "
          f"{len(below_sat)} below saturation, {len(ok)} within {TOLERANCE:.0%} on every figure")
    for fig in FIGURES:
        errs = [abs(c.errors()[fig]) for c in below_sat]
        if errs:
            print(f"  {fig:<10} worst {max(errs):6.1%}  mean |error| {np.mean(errs):6.1%}")
    print(ERROR_TARGET.line(worst, note=f"{len(ok)}/{len(below_sat)} points"))
    return 0
