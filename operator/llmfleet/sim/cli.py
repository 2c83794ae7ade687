"""``llmfleet simulate [SCENARIO]``: replay the scenario against every policy and report."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmfleet.api.references import FleetSnapshot
    from llmfleet.fairness.scheduling import Scheduler
    from llmfleet.sim.scenario import Scenario

MAX_DAYS = 14.0
"""The traces hold 14 days (a scenario's ``workload.days`` has the same bound)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Every flag is checked here, at parse time: a bad one fails before any trace is read.
    p.add_argument("scenario", nargs="?",
                   help="scenario YAML, or an embedded scenario by name: default, storm, "
                   "routing (default: default)")
    p.add_argument("--policies", type=policy_names,
                   help="comma-separated policy names (default: all)")
    p.add_argument("--days", type=days, help="days to simulate (default: the scenario's)")
    p.add_argument("--seed", type=int, help="workload seed (default: the scenario's)")
    p.add_argument("--out", default="sim-report", help="report directory (default sim-report)")
    p.add_argument("--traces", help="traces directory (default ../shared/traces)")
    p.add_argument("--scheduler", default="fcfs", type=scheduler_name,
                   help="per-replica scheduler: fcfs, rpm, vtc, fairserve (default fcfs)")
    p.add_argument("--sweep", action="store_true",
                   help="also run each policy's knob at its other values (reactive target "
                   "utilisation, static-peak headroom, SageServe thresholds, llmfleet tier "
                   "utilisation) for the frontier plot and the cost at equal SLO")
    p.add_argument("--no-routing-baseline", action="store_true",
                   help="with a scenario that routes (its routing: entries), skip the extra "
                   "llmfleet run with routing off (the report's routing section)")


def policy_names(text: str) -> list[str]:
    """``--policies``: comma-separated names of :func:`llmfleet.sim.policies.policy_factories`."""
    from llmfleet.sim.policies import policy_factories

    known = list(policy_factories())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known] or ([] if names else [text])
    if unknown:
        bad = ", ".join(repr(n) for n in unknown)
        raise argparse.ArgumentTypeError(
            f"unknown policy {bad}; known: {', '.join(known)}"
        )
    return names


def scheduler_name(text: str) -> str:
    """``--scheduler``: one of :data:`llmfleet.fairness.schedulers.SCHEDULERS`."""
    from llmfleet.fairness.schedulers import SCHEDULERS

    if text not in SCHEDULERS:
        raise argparse.ArgumentTypeError(
            f"unknown scheduler {text!r}; known: {', '.join(SCHEDULERS)}"
        )
    return text


def days(text: str) -> float:
    """``--days``: simulated days, > 0 and at most :data:`MAX_DAYS`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_DAYS):
        raise argparse.ArgumentTypeError(
            f"must be > 0 and <= {MAX_DAYS:g} days (the traces hold {MAX_DAYS:g}), got {text}"
        )
    return value


class _Bar:
    """One progress line for the policies running at once (several in parallel); a policy
    that finishes gets a line of its own."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.running: dict[str, float] = {}

    def __call__(self, policy: str, frac: float) -> None:
        el = time.perf_counter() - self.t0
        if frac >= 1.0:
            self.running.pop(policy, None)
            sys.stderr.write(f"\r\033[K{policy:<14} done {el:7.1f}s\n")
        else:
            self.running[policy] = frac
        if self.running:
            parts = []
            for name, f in self.running.items():
                n = int(f * 20)
                parts.append(f"{name} [{'#' * n}{'.' * (20 - n)}] {100 * f:5.1f}%")
            sys.stderr.write(f"\r\033[K{'  '.join(parts)}  {el:6.1f}s")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llmfleet simulate", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    # imported here: the CLI builds its parser from add_arguments without loading the twin
    from llmfleet.fairness.schedulers import make_scheduler
    from llmfleet.sim.policies import policy_factories
    from llmfleet.sim.report import (
        add_routing,
        routing_section,
        run_policies,
        shipped,
        summary_table,
        write_report,
    )
    from llmfleet.sim.sweep import equal_slo, equal_slo_table, points, sweep_factories
    from llmfleet.sim.workload import stream_workload

    scenario, snap = load(args.scenario)
    t0 = time.perf_counter()
    wl = stream_workload(scenario, snap, traces=args.traces, days=args.days, seed=args.seed)
    sys.stderr.write(f"workload: {len(wl):,} requests from {len(wl.tenants)} tenants over "
                     f"{wl.duration / 86400:g} days ({time.perf_counter() - t0:.1f}s)\n")
    policies = args.policies or list(policy_factories())
    factories = None
    if getattr(args, "sweep", False):
        factories = sweep_factories(policy_factories(), policies)
        policies = list(factories)
    name = getattr(args, "scheduler", "fcfs")
    tenants = list(snap.tenants)

    def scheduler() -> Scheduler:
        return make_scheduler(name, tenants)

    cmp = run_policies(scenario, policies, seed=args.seed, progress=_Bar(), workload=wl,
                       scheduler_factory=scheduler, factories=factories)
    print(summary_table(shipped(cmp)))
    print(equal_slo_table(equal_slo(points(cmp))))
    files = write_report(cmp, args.out)
    if (scenario.router_shares() is not None and "llmfleet" in cmp.runs
            and not getattr(args, "no_routing_baseline", False)):
        plain = scenario.with_routing(False)
        wl_off = stream_workload(plain, snap, traces=args.traces, days=args.days, seed=args.seed)
        sys.stderr.write("llmfleet with routing off (same arrivals):\n")
        off = run_policies(plain, ["llmfleet"], seed=args.seed, progress=_Bar(), workload=wl_off,
                           scheduler_factory=scheduler)
        section = routing_section(scenario, wl, cmp.runs["llmfleet"], off.runs["llmfleet"])
        add_routing(args.out, section)
        lf = section["llmfleet"]
        print(f"routing: llmfleet USD {lf['routing_off']['usd']:,.0f} -> "
              f"{lf['routing_on']['usd']:,.0f} ({lf['usd_saving']:.1%} saved), GPU-h "
              f"{lf['routing_off']['gpu_hours']:,.0f} -> {lf['routing_on']['gpu_hours']:,.0f} "
              f"({lf['gpu_hours_saving']:.1%})")
    print(f"report: {len(files)} files in {args.out}/ (report.md, metrics.json, summary.txt, plots)")
    return 0


def load(path: str | None) -> tuple[Scenario, FleetSnapshot]:
    """The scenario file (None: the embedded default) and its fleet, checked; every problem
    is a one-line :class:`~llmfleet.sim.scenario.ScenarioError` that starts with the file."""
    import yaml
    from pydantic import ValidationError

    from llmfleet.api.loading import ManifestError, describe_validation_error
    from llmfleet.sim.scenario import ScenarioError, load_scenario

    where = path or "the embedded default scenario"

    def error(prefix: str, err: Exception) -> ScenarioError:
        text = str(err)
        if isinstance(err.__cause__, ValidationError):
            text = describe_validation_error(err.__cause__)
        elif text.startswith(f"{prefix}: "):  # the scenario's name: say the file instead
            text = text[len(prefix) + 2 :]
        return ScenarioError(f"{where}: {' '.join(text.split())}")

    try:
        scenario = load_scenario(path)
    except FileNotFoundError:
        raise ScenarioError(
            f"{where}: no such scenario file (give a scenario YAML, or none for the embedded "
            "default)"
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ScenarioError(f"{where}: not valid YAML{at}: {err.problem}") from err
    except ScenarioError as err:
        stem = Path(path).stem if path else "default"
        raise error(stem, err) from err
    try:
        return scenario, scenario.snapshot()
    except (ScenarioError, ManifestError) as err:
        raise error(scenario.name, err) from err
