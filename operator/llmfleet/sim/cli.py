"""``llmfleet simulate [SCENARIO]``: replay the scenario against every policy and report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmfleet.fairness.scheduling import Scheduler


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario YAML (default: the embedded one)")
    p.add_argument("--policies", help="comma-separated policy names (default: all)")
    p.add_argument("--days", type=float, help="days to simulate (default: the scenario's)")
    p.add_argument("--seed", type=int, help="workload seed (default: the scenario's)")
    p.add_argument("--out", default="sim-report", help="report directory (default sim-report)")
    p.add_argument("--traces", help="traces directory (default ../shared/traces)")
    p.add_argument("--scheduler", default="fcfs",
                   help="per-replica scheduler: fcfs, rpm, vtc, fairserve (default fcfs)")


class _Bar:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, policy: str, frac: float) -> None:
        n = int(frac * 30)
        el = time.perf_counter() - self.t0
        sys.stderr.write(f"\r{policy:<14} [{'#' * n}{'.' * (30 - n)}] {100 * frac:5.1f}%  "
                         f"{el:6.1f}s")
        if frac >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llmfleet simulate", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    # imported here: the CLI builds its parser from add_arguments without loading the twin
    from llmfleet.fairness.schedulers import make_scheduler
    from llmfleet.sim.report import run_policies, summary_table, write_report
    from llmfleet.sim.scenario import load_scenario
    from llmfleet.sim.workload import stream_workload

    scenario = load_scenario(args.scenario)
    snap = scenario.snapshot()
    t0 = time.perf_counter()
    wl = stream_workload(scenario, snap, traces=args.traces, days=args.days, seed=args.seed)
    sys.stderr.write(f"workload: {len(wl):,} requests from {len(wl.tenants)} tenants over "
                     f"{wl.duration / 86400:g} days ({time.perf_counter() - t0:.1f}s)\n")
    policies = args.policies.split(",") if args.policies else None
    name = getattr(args, "scheduler", "fcfs")
    tenants = list(snap.tenants)

    def scheduler() -> Scheduler:
        return make_scheduler(name, tenants)

    cmp = run_policies(scenario, policies, seed=args.seed, progress=_Bar(), workload=wl,
                       scheduler_factory=scheduler)
    print(summary_table(cmp))
    files = write_report(cmp, args.out)
    print(f"report: {len(files)} files in {args.out}/ (report.md, metrics.json, summary.txt, plots)")
    return 0
