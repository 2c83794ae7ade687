"""Running every policy on the same arrivals, and the report: table, ratios, plots, files.

Ratios are ``policy / reactive`` (the reactive threshold autoscaler is the baseline); the
fluid lower bound (:mod:`llmfleet.sim.bound`) is printed under the table.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmfleet.fairness.scheduling import FCFS
from llmfleet.sim.bound import fluid_bound
from llmfleet.sim.engine import Engine, SchedulerFactory
from llmfleet.sim.metrics import MIN_TENANT_REQUESTS, SLO_PERCENTILE, Recorder
from llmfleet.sim.policies import PolicyFactory, policy_factories
from llmfleet.sim.scenario import Scenario
from llmfleet.sim.sweep import KNOBS, Point, equal_slo, equal_slo_table, points
from llmfleet.sim.workload import AnyWorkload, stream_workload

BASELINE = "reactive"


@dataclass
class RunResult:
    policy: str
    summary: dict[str, Any]
    recorder: Recorder
    wall_seconds: float


@dataclass
class Comparison:
    scenario: Scenario
    workload: AnyWorkload
    runs: dict[str, RunResult]
    bound: dict[str, float]

    @property
    def requests(self) -> int:
        """Requests in the workload (every run saw the same ones)."""
        return int(next(iter(self.runs.values())).summary["requests"]) if self.runs else 0


def run_policies(
    scenario: Scenario,
    policies: Sequence[str] | None = None,
    days: float | None = None,
    seed: int | None = None,
    scheduler_factory: SchedulerFactory = FCFS,
    factories: Mapping[str, PolicyFactory] | None = None,
    progress: Callable[[str, float], None] | None = None,
    workload: AnyWorkload | None = None,
    workers: int | None = None,
) -> Comparison:
    """Run each policy on the same synthesised arrivals (one workload, one seed; by default
    a stream, replayed once per policy, so memory does not grow with the run's length).

    ``workers`` > 1 runs policies in that many forked processes at once (default: one per
    core, at most one per policy); each replays the same arrivals with the same seed, so the
    results are those of a serial run."""
    snap = scenario.snapshot()
    table = dict(factories or policy_factories())
    names = list(policies or table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise KeyError(f"unknown policies {unknown}; known: {sorted(table)}")
    wl = workload or stream_workload(scenario, snap, days=days, seed=seed)
    run_seed = scenario.workload.seed if seed is None else seed

    def run_one(name: str, report: Callable[[str, float], None] | None) -> RunResult:
        t0 = time.perf_counter()
        policy = table[name](scenario, wl)
        cb = (lambda f, n=name: report(n, f)) if report else None
        eng = Engine(snap, wl, policy, scenario.engine, scheduler_factory, run_seed, cb)
        rec = eng.run()
        if report:
            report(name, 1.0)
        summary = rec.summary()
        for tier, extra in rec.within_limits().items():
            summary["tiers"][tier].update(extra)
        own = getattr(policy, "report", None)
        if callable(own):  # what a policy says of itself (llmfleet: its plans, routing)
            summary["policy"] = own()
        return RunResult(name, summary, rec, time.perf_counter() - t0)

    n_workers = min(workers or os.cpu_count() or 1, len(names))
    if n_workers <= 1 or "fork" not in mp.get_all_start_methods():
        runs = {name: run_one(name, progress) for name in names}
    else:
        runs = _in_processes(names, run_one, progress, n_workers, wl)
    return Comparison(scenario, wl, {n: runs[n] for n in names}, fluid_bound(snap, wl))


# The planner policies take far longer than the rules-based baselines: start them first.
_SLOW_FIRST = ("llmfleet", "oracle", "sageserve")


class _Names:
    """What a returned Recorder keeps of the workload (the parent re-attaches its own)."""

    def __init__(self, wl: AnyWorkload) -> None:
        self.tenants, self.tiers, self._n = wl.tenants, wl.tiers, len(wl)

    def __len__(self) -> int:
        return self._n


def _child(name: str, run_one: Callable[..., RunResult], q: Any) -> None:
    try:
        result = run_one(name, lambda n, f: q.put(("progress", n, f)))
        result.recorder.wl = _Names(result.recorder.wl)  # type: ignore[assignment]
        q.put(("done", name, result))
    except BaseException as err:  # the child's boundary: the parent says which policy failed
        q.put(("error", name, f"{type(err).__name__}: {err}"))


def _in_processes(
    names: Sequence[str],
    run_one: Callable[..., RunResult],
    progress: Callable[[str, float], None] | None,
    workers: int,
    wl: AnyWorkload,
) -> dict[str, RunResult]:
    """``run_one`` for every policy in ``workers`` forked processes (fork: the children get
    the parent's scenario and workload without pickling them; only results come back)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    def slow_first(n: str) -> tuple[bool, int]:
        policy = n.partition("@")[0]  # a sweep's run takes as long as its policy
        return (policy not in _SLOW_FIRST,
                _SLOW_FIRST.index(policy) if policy in _SLOW_FIRST else 0)

    todo = sorted(names, key=slow_first)
    running: dict[str, Any] = {}
    out: dict[str, RunResult] = {}
    try:
        while todo or running:
            while todo and len(running) < workers:
                name = todo.pop(0)
                # not daemonic: the planner solves in a child process of its own
                p = ctx.Process(target=_child, args=(name, run_one, q))
                p.start()
                running[name] = p
            try:
                kind, name, payload = q.get(timeout=1.0)
            except queue.Empty:
                dead = [n for n, p in running.items() if not p.is_alive() and n not in out]
                if dead:
                    raise RuntimeError(f"policy {dead[0]}: its process died "
                                       f"(exit code {running[dead[0]].exitcode})") from None
                continue
            if kind == "progress":
                if progress:
                    progress(name, payload)
            elif kind == "error":
                raise RuntimeError(f"policy {name} failed: {payload}")
            else:
                payload.recorder.wl = wl
                out[name] = payload
                running.pop(name).join(timeout=10)
    finally:
        for p in running.values():
            p.kill()
    return out


# ---------------------------------------------------------------- table
def _ratio(v: float, base: float | None) -> str:
    if base is None or base == 0 or math.isnan(base) or math.isnan(v):
        return "-"
    return f"{v / base:.2f}x"


def summary_table(cmp: Comparison) -> str:
    """A text table per policy with ratios to the reactive baseline."""
    runs = cmp.runs
    base = runs.get(BASELINE)
    tiers = sorted({t for r in runs.values() for t in r.summary["tiers"]})
    head = ["policy", "USD", "vs reactive", "GPU-h", "spot GPU-h", "load GPU-h", "actions",
            "rejected", "retried"]
    head += [f"{t} p95 TTFT s" for t in tiers] + [f"{t} SLO" for t in tiers]
    head += [f"{t} hours in SLO" for t in tiers]
    head += ["deadline miss", "Jain"]
    rows = [head]
    for name, r in runs.items():
        s = r.summary
        row = [
            name, f"{s['usd_total']:,.0f}",
            _ratio(s["usd_total"], base.summary["usd_total"] if base else None),
            f"{s['gpu_hours_total']:,.0f}", f"{s['gpu_hours']['spot']:,.0f}",
            f"{s['loading_gpu_hours']:,.1f}", str(s["scaling_actions"]),
            str(s["rejected"]), str(s["retried"]),
        ]
        row += [f"{s['tiers'].get(t, {}).get('ttft_p95', float('nan')):.2f}" for t in tiers]
        row += [f"{100 * s['tiers'].get(t, {}).get('attainment', float('nan')):.1f}%"
                for t in tiers]
        row += [f"{100 * s['tiers'].get(t, {}).get('hourly_attainment', float('nan')):.1f}%"
                for t in tiers]
        row += [str(sum(int(v["deadline_misses"]) for v in s["tiers"].values())),
                f"{s['jain']:.3f}"]
        rows.append(row)
    lines = _aligned(rows)
    for name, r in runs.items():
        s = r.summary
        rej = ", ".join(f"{k}={v}" for k, v in sorted(s["reject_reasons"].items())) or "none"
        ret = ", ".join(f"{k}={v}" for k, v in sorted(s["retry_reasons"].items())) or "none"
        lines.append(f"{name}: rejected {rej}; retried {ret}; spilled "
                     f"{s.get('spilled', 0):,}; in flight at end "
                     f"{s['in_flight_end']}; run {r.wall_seconds:.1f}s")
    b = cmp.bound
    lines.append(f"fluid lower bound: {b['usd']:,.0f} USD, {b['gpu_hours']:,.0f} GPU-h "
                 "(token work / best throughput per USD, per GPU; no queueing, no packing)")
    wl = cmp.workload
    lines.append(f"workload: {cmp.requests:,} requests, {len(wl.tenants)} tenants, "
                 f"{wl.duration / 86400:g} days; capacity scale "
                 f"{cmp.scenario.engine.capacity_scale:g}")
    return "\n".join(lines)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def slo_table(cmp: Comparison) -> str:
    """Every tier's SLO as an SRE reads it, per policy: the share of hours in which the
    tier's p95 target held, TTFT p95 / p99 / p99.9 against the target, the share of requests
    within every target, the worst tenant's, and the rejections by reason. Where a tier had
    requests throttled over their tenant's limit, its hours in SLO are given again without
    them (an SLI leaves out the 429s of a client over its quota)."""
    rows = [["policy", "tier", "target", "hours in SLO", "TTFT p95", "p99", "p99.9",
             "requests in SLO", "worst tenant", "rejected"]]
    targets = {}
    for t in cmp.scenario.snapshot().tiers:
        it, dl = t.spec.interactive, t.spec.deadline
        targets[t.metadata.name] = (
            f"TTFT p95 <= {it.ttft_p95_seconds:g}s" if it and it.ttft_p95_seconds is not None
            else f"done <= {dl.completion_seconds:g}s" if dl else "-"
        )
    for name, r in cmp.runs.items():
        s = r.summary
        for tier, v in sorted(s["tiers"].items()):
            worst = v.get("worst_tenant") or "-"
            wa = v.get("worst_tenant_attainment", float("nan"))
            rows.append([
                name, tier, targets.get(tier, "-"),
                f"{100 * v.get('hourly_attainment', float('nan')):.1f}% of {v.get('hours', 0)}"
                + (f" ({100 * v['hourly_attainment_within_limits']:.1f}% within limits)"
                   if v.get("throttled") else ""),
                f"{v['ttft_p95']:.2f}s", f"{v['ttft_p99']:.2f}s", f"{v['ttft_p999']:.2f}s",
                f"{100 * v['attainment']:.2f}%",
                f"{worst} {100 * wa:.1f}%" if worst != "-" else "-",
                str(v["rejected"]),
            ])
    lines = _aligned(rows)
    for name, r in cmp.runs.items():
        rej = ", ".join(f"{k}={v}" for k, v in sorted(r.summary["reject_reasons"].items()))
        lines.append(f"{name}: rejected by reason: {rej or 'none'}")
    return "\n".join(lines)


def hourly_shares(rec: Recorder, tier: str) -> list[float]:
    """Per hour of arrival, the share of the tier's decided requests that met every target
    (nan for an hour without any)."""
    st = rec.tier_stats.get(tier)
    if st is None:
        return []
    return [ok / n if n else math.nan for ok, n in zip(st.hour_ok, st.hour_decided,
                                                        strict=True)]


def hourly_table(cmp: Comparison) -> str:
    """The per-hour SLO table: per interactive tier, a row per policy and a column per hour
    of arrival; an hour that holds the tier's percentile target is ``.``, one that misses it
    shows its share of requests within target (%)."""
    tiers = [t.metadata.name for t in cmp.scenario.snapshot().tiers
             if t.spec.type == "interactive"]
    out = []
    for tier in tiers:
        shares = {n: hourly_shares(r.recorder, tier) for n, r in cmp.runs.items()}
        hours = max((len(v) for v in shares.values()), default=0)
        if not hours:
            continue
        out.append(f"{tier}: per hour of arrival, '.' = at least {100 * SLO_PERCENTILE:g}% of "
                   "requests within target, else the % that were")
        rows = [["hour", *[str(h) for h in range(hours)]]]
        for name, v in shares.items():
            cells = []
            for h in range(hours):
                x = v[h] if h < len(v) else math.nan
                cells.append("-" if math.isnan(x) else "." if x >= SLO_PERCENTILE
                             else f"{math.floor(100 * x):d}")
            rows.append([name, *cells])
        lines = _aligned(rows)
        out += [lines[0], *lines[2:], ""]
    return "\n".join(out).rstrip()


# ---------------------------------------------------------------- files
def shipped(cmp: Comparison) -> Comparison:
    """``cmp`` without the sweep's runs (``policy@knob=value``): each policy as it ships."""
    return dataclasses.replace(cmp, runs={n: r for n, r in cmp.runs.items() if "@" not in n})


def write_report(cmp: Comparison, out: Path | str) -> list[Path]:
    """Write report.md, metrics.json, summary.txt, per-tenant CSVs and PNG plots into
    ``out``. Runs of the equal-SLO sweep (:mod:`llmfleet.sim.sweep`) appear in the frontier
    plot, the equal-SLO table and metrics.json; the other tables and plots show each policy
    as it ships."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    files = []
    pts = points(cmp)
    ratios = equal_slo(pts)
    data = {n: {**r.summary, "wall_seconds": r.wall_seconds,
                "hourly_in_slo": {t: hourly_shares(r.recorder, t) for t in r.summary["tiers"]}}
            for n, r in cmp.runs.items()}
    p = d / "metrics.json"
    p.write_text(json.dumps({
        "policies": data, "fluid_bound": cmp.bound,
        "equal_slo": [{"baseline": r.baseline, "against": r.against.run,
                       "reaches_llmfleet_slo": r.match is not None, "usd_ratio": r.usd_ratio,
                       "gpu_hours_ratio": r.gpu_ratio, "llmfleet_slo": r.lead.slo,
                       "baseline_slo": r.against.slo} for r in ratios],
    }, indent=2, default=float))
    files.append(p)
    sweep_plot = _frontier(pts, d)
    cmp = shipped(cmp)
    p = d / "summary.txt"
    p.write_text(summary_table(cmp) + "\n\n" + slo_table(cmp) + "\n\n" + hourly_table(cmp)
                 + "\n\n" + equal_slo_table(ratios) + "\n")
    files.append(p)
    for name, r in cmp.runs.items():
        p = d / f"tenants-{name}.csv"
        rows = r.recorder.per_tenant()
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        files.append(p)
    plots = [sweep_plot, *_plots(cmp, d)]
    files += plots
    p = d / "report.md"
    p.write_text(markdown_report(cmp, [q.name for q in plots], equal_slo_table(ratios)))
    files.insert(0, p)
    return files


LEAD = "llmfleet"


def markdown_report(cmp: Comparison, plots: Sequence[str] = (), equal: str = "") -> str:
    """The report: llmfleet against each baseline (ratios, SLOs beside), the cost at equal
    SLO (``equal``: :func:`~llmfleet.sim.sweep.equal_slo_table`), the full table, the fluid
    bound and the plots."""
    runs = cmp.runs
    wl = cmp.workload
    tiers = sorted({t for r in runs.values() for t in r.summary["tiers"]})
    out = [
        f"# llmfleet digital twin: {cmp.scenario.name}",
        "",
        f"{cmp.requests:,} requests from {len(wl.tenants)} tenants over {wl.duration / 86400:g} "
        "days; every policy replays the same arrivals. "
        + (
            f"Capacity scale {cmp.scenario.engine.capacity_scale:g} (a simulated replica is a "
            "1/k slice of a real one, so only ratios compare)."
            if cmp.scenario.engine.capacity_scale != 1
            else "Replicas are the LLMModels' real size (capacity scale 1)."
        ),
        "",
    ]
    lead = runs.get(LEAD)
    if lead is not None:
        ls = lead.summary
        out += [f"## {LEAD} against each policy", "",
                "| policy | GPU-h ratio | USD ratio | " + " | ".join(
                    f"{t} SLO ({LEAD} / policy)" for t in tiers) + " |",
                "|---|---:|---:|" + "---:|" * len(tiers)]
        for name, r in runs.items():
            if name == LEAD:
                continue
            s = r.summary
            cells = [
                name,
                _ratio(ls["gpu_hours_total"], s["gpu_hours_total"]),
                _ratio(ls["usd_total"], s["usd_total"]),
            ]
            cells += [
                f"{100 * ls['tiers'].get(t, {}).get('attainment', float('nan')):.1f}% / "
                f"{100 * s['tiers'].get(t, {}).get('attainment', float('nan')):.1f}%"
                for t in tiers
            ]
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"A ratio below 1.00x means {LEAD} uses less than that policy.", ""]
    if equal:
        out += ["## Cost at equal SLO", "",
                "Each baseline's knob swept on the same arrivals (`llmfleet simulate --sweep`);"
                " the ratio is against the baseline's cheapest run that holds at least "
                f"{LEAD}'s SLO level (the worst interactive tier's share of hours in SLO). "
                "See frontier.png.", "", "```", equal, "```", ""]
    out += ["## All policies (ratios against the reactive baseline)", "", "```",
            summary_table(cmp), "```", ""]
    out += ["## SLOs per tier, as an SRE reads them", "",
            "An hour is within SLO when at least 95% of the requests that arrived in it met "
            "every target of their tier (rejected requests are misses). The worst tenant is "
            f"the tenant of the tier with the lowest share of requests in SLO (at least "
            f"{MIN_TENANT_REQUESTS} requests).", "", "```", slo_table(cmp), "```", "",
            "Hour by hour:", "", "```", hourly_table(cmp), "```", ""]
    if plots:
        out += ["## Plots", ""] + [f"![{q}]({q})" for q in plots] + [""]
    return "\n".join(out)


def _plots(cmp: Comparison, d: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, r in cmp.runs.items():
        ax.plot(np.arange(len(r.recorder.hourly_usd)), r.recorder.hourly_usd, label=name)
    ax.set_xlabel("hour")
    ax.set_ylabel("USD per hour")
    ax.set_title("Cost over time")
    ax.legend()
    out.append(_save(fig, plt, d / "cost_over_time.png"))
    # one colour per pool across every policy's plot, and one GPU scale
    every = sorted({k for r in cmp.runs.values() for _, s in r.recorder.gpu_samples
                    for k, v in s.items() if v})
    colour = dict(zip(every, pool_colours(len(every), plt), strict=True))
    top = max((sum(s.values()) for r in cmp.runs.values() for _, s in r.recorder.gpu_samples),
              default=0)
    for name, r in cmp.runs.items():
        samples = r.recorder.gpu_samples
        if not samples:
            continue
        pools = [k for k in every if any(s.get(k) for _, s in samples)]
        if not pools:
            continue
        t = np.array([s[0] for s in samples]) / 3600.0
        ys = [np.array([s[1].get(k, 0) for s in samples]) for k in pools]
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.stackplot(t, ys, labels=pools, colors=[colour[k] for k in pools], step="post")
        ax.set_ylim(0, top * 1.05 or 1)
        ax.set_xlabel("hour")
        ax.set_ylabel("GPUs (same scale and pool colours for every policy)")
        ax.set_title(f"GPUs by pool: {name}")
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        out.append(_save(fig, plt, d / f"gpus_by_pool-{name}.png"))
    out += _policy_bars(cmp, d, plt)
    out += _region_demand(cmp, d, plt)
    out += _tenant_service(cmp, d, plt)
    wl = cmp.workload
    for tier in wl.tiers:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for name, r in cmp.runs.items():
            st = r.recorder.tier_stats.get(tier)
            for ax, h, lbl in ((axes[0], st.ttft if st else None, "TTFT s"),
                               (axes[1], st.e2e if st else None, "end-to-end s")):
                if h is not None and h.n:
                    x, y = h.cdf()
                    ax.step(np.maximum(x, 1e-3), y, where="post", label=name)
                ax.set_xscale("log")
                ax.set_xlabel(lbl)
                ax.set_ylabel("CDF")
        axes[0].set_title(f"{tier}: TTFT")
        axes[1].set_title(f"{tier}: end-to-end")
        axes[1].legend(fontsize=8)
        out.append(_save(fig, plt, d / f"latency_cdf-{tier}.png"))
    return out


def _frontier(pts: Sequence[Point], d: Path) -> Path:
    """Cost against SLO level for every run, a marker and colour per policy, each
    policy's runs joined in knob order and labelled with the knob's value; USD left, GPU-h
    right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    policies = list(dict.fromkeys(p.policy for p in pts))
    markers = "os^DvP*X"
    for i, policy in enumerate(policies):
        mine = sorted((p for p in pts if p.policy == policy),
                      key=lambda p: -math.inf if p.value is None else p.value)
        knob = KNOBS.get(policy)
        for ax, cost in ((axes[0], "usd"), (axes[1], "gpu_hours")):
            xs = [100 * p.slo for p in mine]
            ys = [getattr(p, cost) for p in mine]
            ax.plot(xs, ys, marker=markers[i % len(markers)], color=f"C{i}", label=policy,
                    lw=2.5 if policy == LEAD else 1.0, ms=7)
            if knob is not None:
                for p, x, y in zip(mine, xs, ys, strict=True):
                    ax.annotate(f"{knob.name}={p.value:g}", (x, y), fontsize=6,
                                textcoords="offset points", xytext=(4, 4), color=f"C{i}")
    for ax, label in ((axes[0], "USD"), (axes[1], "GPU-hours")):
        ax.set_xlabel("SLO level: worst interactive tier, % of hours in SLO")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against SLO (lower right is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, plt, d / "frontier.png")


def _policy_bars(cmp: Comparison, d: Path, plt: Any) -> list[Path]:
    names = list(cmp.runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label, bound in (
        (axes[0], "gpu_hours_total", "GPU-hours", cmp.bound["gpu_hours"]),
        (axes[1], "usd_total", "USD", cmp.bound["usd"]),
    ):
        vals = [cmp.runs[n].summary[key] for n in names]
        ax.bar(names, vals, color=["C0" if n == LEAD else "C7" for n in names])
        ax.axhline(bound, color="C3", ls="--", lw=1, label="fluid lower bound")
        ax.set_ylabel(label)
        ax.set_title(f"{label} by policy")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=8)
    return [_save(fig, plt, d / "gpu_hours_and_usd.png")]


def _region_demand(cmp: Comparison, d: Path, plt: Any) -> list[Path]:
    """Token demand by origin region (hourly) against the GPUs each policy provisioned there:
    one row of panels per policy, one column per region (shared axes per column), so no two
    policies' lines overlap. The demand of hour h is drawn over [h, h + 1)."""
    wl = cmp.workload
    hours = max(math.ceil(wl.duration / 3600), 1)
    demand_by = np.zeros((len(wl.regions), hours))
    for c in wl.chunks():
        h = np.minimum((c.arrival // 3600).astype(np.int64), hours - 1)
        np.add.at(demand_by, (c.origin, h), (c.prompt + c.output).astype(np.float64))
    runs = [(n, r) for n, r in cmp.runs.items() if r.recorder.gpu_samples]
    nr, nc = max(len(runs), 1), len(wl.regions)
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, 1.9 * nr + 0.6), sharex=True,
                             sharey="col", squeeze=False)
    edges = np.arange(hours + 1)
    twins: dict[int, list[Any]] = {}
    for pi, (name, r) in enumerate(runs):
        samples = r.recorder.gpu_samples
        t = np.array([x[0] for x in samples]) / 3600.0
        for ri, region in enumerate(wl.regions):
            ax = axes[pi][ri]
            demand = demand_by[ri] / 3600.0
            ax.fill_between(edges, np.append(demand, demand[-1]), step="post", color="C7",
                            alpha=0.35, lw=0, label="demand from here (tok/s)")
            ax2 = ax.twinx()
            twins.setdefault(ri, []).append(ax2)
            g = np.array([sum(v for k, v in x[1].items() if k.split("/")[0] == region)
                          for x in samples])
            ax2.step(t, g, where="post", color="C0" if name == LEAD else "C3", lw=1.1,
                     label="GPUs there")
            if pi == 0:
                ax.set_title(region, fontsize=9)
            if ri == 0:
                ax.set_ylabel(f"{name}\ntok/s", fontsize=8)
            if ri == nc - 1:
                ax2.set_ylabel("GPUs", fontsize=8)
            ax.tick_params(labelsize=7)
            ax2.tick_params(labelsize=7)
            if pi == 0 and ri == 0:
                h1, l1 = ax.get_legend_handles_labels()
                h2, l2 = ax2.get_legend_handles_labels()
                ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    for col in twins.values():  # one GPU scale per region, so panels compare down a column
        top = max(a.get_ylim()[1] for a in col)
        for a in col:
            a.set_ylim(0, top)
    for ri in range(nc):
        axes[-1][ri].set_xlabel("hour")
    fig.suptitle("Demand by origin region vs GPUs provisioned there, per policy")
    return [_save(fig, plt, d / "demand_vs_capacity_by_region.png")]


def pool_colours(n: int, plt: Any) -> list[Any]:
    """``n`` distinguishable colours: tab20's 20, then tab20b's and tab20c's (60 in all)."""
    maps = [plt.get_cmap(m) for m in ("tab20", "tab20b", "tab20c")]
    return [maps[(i // 20) % 3](i % 20) for i in range(n)]


def _tenant_service(cmp: Comparison, d: Path, plt: Any) -> list[Path]:
    """Per tenant: share of served tokens against share of weight, per policy."""
    wl = cmp.workload
    weights = {t.spec.tenant_id: t.spec.weight for t in cmp.scenario.snapshot().tenants}
    w = np.array([weights.get(n, 1.0) for n in wl.tenants])
    first = next(iter(cmp.runs.values())).recorder.tenant_stats
    asked = np.array([first[n].asked_tokens for n in wl.tenants])
    order = np.argsort(-asked)
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(wl.tenants))
    ax.bar(x, asked[order] / asked.sum(), color="C7", alpha=0.35, label="asked (share)")
    for i, (name, r) in enumerate(cmp.runs.items()):
        ts = r.recorder.tenant_stats
        served = np.array([ts[n].served_tokens for n in wl.tenants])
        ax.plot(x, served[order] / max(asked.sum(), 1.0), marker=".", lw=0.8, color=f"C{i}",
                label=name)
    ax.plot(x, w[order] / w.sum(), color="k", ls=":", lw=1, label="weight share")
    ax.set_xticks(x)
    ax.set_xticklabels([wl.tenants[j] for j in order], rotation=90, fontsize=6)
    ax.set_ylabel("share of all tokens asked")
    ax.set_title("Per-tenant service: tokens served vs asked, by policy")
    ax.legend(fontsize=7, ncol=4)
    return [_save(fig, plt, d / "tenant_service.png")]


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- routing (issue 13)


def routed_counts(wl: AnyWorkload, tiers: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """Per routed tier, per serving model: the requests, prompt and output tokens the
    workload sent there (one pass over the stream)."""
    index = {wl.tiers.index(t): t for t in tiers if t in wl.tiers}
    out: dict[str, dict[str, list[float]]] = {t: {} for t in index.values()}
    for c in wl.chunks():
        for ti, name in index.items():
            sel = c.tier == ti
            if not sel.any():
                continue
            m = c.model[sel]
            n = np.bincount(m, minlength=len(c.models))
            p = np.bincount(m, weights=c.prompt[sel].astype(float), minlength=len(c.models))
            o = np.bincount(m, weights=c.output[sel].astype(float), minlength=len(c.models))
            for j, model in enumerate(c.models):
                if n[j]:
                    cell = out[name].setdefault(model, [0.0, 0.0, 0.0])
                    cell[0] += float(n[j])
                    cell[1] += float(p[j])
                    cell[2] += float(o[j])
    return out


def _run_cost(r: RunResult) -> dict[str, Any]:
    s = r.summary
    return {"usd": s["usd_total"], "gpu_hours": s["gpu_hours_total"],
            "attainment": {t: v["attainment"] for t, v in s["tiers"].items()},
            "hourly_in_slo": {t: v["hourly_attainment"] for t, v in s["tiers"].items()},
            "wall_seconds": r.wall_seconds}


def routing_section(
    scenario: Scenario, wl: AnyWorkload, on: RunResult, off: RunResult
) -> dict[str, Any]:
    """The report's routing section: per routed tier the calibrated and the sent shares,
    the quality floor and the calibration's measured drop; llmfleet's cost and SLOs on the
    same arrivals with routing on (``on``, the scenario as given) and off (``off``)."""
    snap = scenario.snapshot()
    tier_specs = {t.metadata.name: t.spec for t in snap.tiers}
    entries = [(r, ts) for r, ts in scenario.tier_shares() if r.enabled]
    counts = routed_counts(wl, [r.tier for r, _ in entries])
    tiers: dict[str, Any] = {}
    for r, ts in entries:
        spec = tier_specs[r.tier].routing
        sent = counts.get(r.tier, {})
        tot = [sum(v[i] for v in sent.values()) or 1.0 for i in range(3)]
        tiers[r.tier] = {
            "reference": ts.reference,
            "metric": spec.metric if spec else "",
            "quality_floor_points": spec.max_quality_drop if spec else None,
            "measured_drop_points": ts.drop_points,
            "note": ts.note,
            "calibrated": [{"model": o.model, "samples": o.samples, "requests": o.requests,
                            "prompt_tokens": o.prompt_tokens, "output_tokens": o.output_tokens}
                           for o in ts.options],
            "sent": {m: {"requests": v[0] / tot[0], "prompt_tokens": v[1] / tot[1],
                         "output_tokens": v[2] / tot[2], "count": int(v[0])}
                     for m, v in sorted(sent.items())},
        }  # fmt: skip
    a, b = _run_cost(on), _run_cost(off)
    a["replicas_because_of_routing"] = on.summary.get("policy", {}).get("routing", {})
    return {
        "tiers": tiers,
        "llmfleet": {
            "routing_on": a, "routing_off": b,
            "usd_saving": 1 - a["usd"] / b["usd"] if b["usd"] else float("nan"),
            "gpu_hours_saving": (1 - a["gpu_hours"] / b["gpu_hours"]
                                 if b["gpu_hours"] else float("nan")),
        },
    }  # fmt: skip


def routing_markdown(section: Mapping[str, Any]) -> str:
    """The routing section of report.md (:func:`routing_section`)."""
    out = ["## Quality-aware routing (llmfleet with routing off and on)", "",
           "Same arrivals both ways; with routing on, each request of a routed tier goes to "
           "the model the router's calibrated shares draw (the baselines above ran with "
           "routing on), and llmfleet plans with the same shares.", ""]
    for tier, t in section["tiers"].items():
        floor, drop = t["quality_floor_points"], t["measured_drop_points"]
        out += [f"Tier `{tier}` (reference {t['reference']}): quality floor {floor:g} "
                f"points of {t['metric']}; measured drop on the calibration data "
                + (f"{drop:.2f} points" if drop is not None else "not given")
                + (f" ({t['note']})" if t["note"] else "") + ".", "",
                "| model | calibrated requests | sent requests | calibrated prompt | "
                "sent prompt | calibrated output | sent output |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for o in t["calibrated"]:
            name = o["model"] + (f"@{o['samples']}" if o["samples"] > 1 else "")
            s = t["sent"].get(o["model"], {})
            out.append(
                f"| {name} | {o['requests']:.1%} | {s.get('requests', 0.0):.1%} | "
                f"{o['prompt_tokens']:.1%} | {s.get('prompt_tokens', 0.0):.1%} | "
                f"{o['output_tokens'] * o['samples']:.1%} | {s.get('output_tokens', 0.0):.1%} |")
        out.append("")
    lf = section["llmfleet"]
    a, b = lf["routing_on"], lf["routing_off"]
    tiers = sorted(set(a["attainment"]) | set(b["attainment"]))
    out += ["| llmfleet | USD | GPU-h | " + " | ".join(f"{t} in SLO" for t in tiers) + " |",
            "|---|---:|---:|" + "---:|" * len(tiers)]
    for name, r in (("routing off", b), ("routing on", a)):
        out.append(f"| {name} | {r['usd']:,.0f} | {r['gpu_hours']:,.0f} | " + " | ".join(
            f"{100 * r['attainment'].get(t, float('nan')):.2f}%" for t in tiers) + " |")
    out += ["", f"Routing saves {lf['usd_saving']:.1%} of USD and {lf['gpu_hours_saving']:.1%} "
            "of GPU-hours.", ""]
    because = a.get("replicas_because_of_routing") or {}
    if because:
        out += ["Replicas because of routing (llmfleet's plans with routing on, mean over its "
                "plans of step 0, all regions; proportional attribution, "
                "`llmfleet.plan.explain.routed_replicas`):", "",
                "| model | replicas routing put there | replicas it spared |", "|---|---:|---:|"]
        out += [f"| {m} | {v['routed_replicas']:.1f} | {v['saved_replicas']:.1f} |"
                for m, v in because.items()]
        out.append("")
    return "\n".join(out)


def add_routing(out: Path | str, section: Mapping[str, Any]) -> None:
    """Add the routing section to ``out``'s metrics.json and report.md."""
    d = Path(out)
    p = d / "metrics.json"
    data = json.loads(p.read_text()) if p.is_file() else {}
    data["routing"] = section
    p.write_text(json.dumps(data, indent=2, default=float))
    md = d / "report.md"
    text = md.read_text() if md.is_file() else ""
    md.write_text(text.rstrip("\n") + "\n\n" + routing_markdown(section))
