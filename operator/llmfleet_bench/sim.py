"""``llmfleet bench sim``: how fast the twin replays requests, and its peak memory.

For each size N the embedded default scenario's traffic is scaled so that its days hold
about N requests (the fleet follows: the reactive baseline scales out) and one policy replays
the streamed workload (synthesised an hour at a time while it is replayed, as
``llmfleet simulate`` does). Each size runs in a forked child so its peak resident memory is
its own. Printed per size: requests, seconds of one synthesis pass alone, seconds to
replay (synthesis included) in wall time and in the child's CPU time, simulated requests per
second and per minute of wall time, per minute of CPU time (what one core does when other
processes share the machine), and the peak RSS of the child: with streamed requests and
metrics it should not grow with N.

Then the twin's targets, each beside its measured figure with a pass/miss mark:

* at least :data:`MIN_REQUESTS_PER_MINUTE` (5 M) simulated requests per minute of wall time
  at every size (one core; the default ``llmfleet simulate``, six policies of 5.1 M requests
  on two cores, then replays in about 10 minutes);
* bounded memory: the largest size's peak RSS at most :data:`MAX_PEAK_RSS_GROWTH` times the
  smallest size's (streamed requests and metrics: memory must not follow the trace).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from llmfleet.sim.engine import Engine
from llmfleet.sim.policies import policy_factories
from llmfleet.sim.scenario import Scenario, load_scenario
from llmfleet.sim.workload import stream_workload
from llmfleet_bench.targets import Threshold

MIN_REQUESTS_PER_MINUTE = 5_000_000
"""Simulated requests per minute of wall time, at least, at every size."""
MAX_PEAK_RSS_GROWTH = 2.0
"""Peak RSS of the largest size over that of the smallest, at most (10x the requests by
default)."""
SPEED_TARGET = Threshold(
    "simulated requests per minute", MIN_REQUESTS_PER_MINUTE, at_most=False, fmt="{:,.0f}"
)
MEMORY_TARGET = Threshold("peak RSS, largest size over smallest", MAX_PEAK_RSS_GROWTH, "x")


def _scaled(scenario: Scenario, factor: float, days: float) -> Scenario:
    wl = scenario.workload.model_copy(
        update={"scale": scenario.workload.scale * factor, "days": days}
    )
    return scenario.model_copy(update={"workload": wl})


def _one(conn: Connection, scenario: Scenario, policy: str, traces: str | None) -> None:
    try:
        snap = scenario.snapshot()
        t0 = time.perf_counter()
        wl = stream_workload(scenario, snap, traces=traces)
        len(wl)  # one synthesis pass on its own
        built = time.perf_counter() - t0
        pol = policy_factories()[policy](scenario, wl)
        t1, c1 = time.perf_counter(), time.process_time()
        rec = Engine(snap, wl, pol, scenario.engine, seed=scenario.workload.seed).run()
        ran, cpu = time.perf_counter() - t1, time.process_time() - c1
        s = rec.summary()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        conn.send(("ok", len(wl), built, ran, cpu, peak, s["completed"], s["rejected"]))
    except Exception as err:  # report, never hang the parent
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def run(sizes: Sequence[int], policy: str, days: float, traces: str | None) -> list[Any]:
    base = load_scenario()
    per_unit = max(len(stream_workload(_scaled(base, 1.0, days), base.snapshot(), traces=traces)), 1)
    rows = []
    ctx = mp.get_context("fork")
    for n in sizes:
        sc = _scaled(base, n / per_unit, days)
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_one, args=(child, sc, policy, traces))
        proc.start()
        child.close()
        got = parent.recv()
        proc.join()
        if got[0] != "ok":
            raise RuntimeError(f"bench sim at {n:,} requests: {got[1]}")
        rows.append(got[1:])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llmfleet bench sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, nargs="+", default=[1_000_000, 10_000_000],
                   help="sizes to run (default: %(default)s)")
    p.add_argument("--policy", default="reactive", help="policy to replay (default: %(default)s)")
    p.add_argument("--days", type=float, default=3.0, help="simulated days (default: %(default)s)")
    p.add_argument("--traces", help="traces directory (default ../shared/traces)")
    a = p.parse_args(argv)
    print(f"{'requests':>12} {'build_s':>8} {'replay_s':>9} {'cpu_s':>7} {'req/s':>10} "
          f"{'req/min':>12} {'req/cpu-min':>12} {'peakMiB':>8} {'completed':>10} {'rejected':>9}")
    rows = []
    for n, built, ran, cpu, peak, done, rej in run(a.requests, a.policy, a.days, a.traces):
        rate = n / max(ran, 1e-9)
        rows.append((n, 60 * rate, peak))
        print(f"{n:>12,} {built:8.1f} {ran:9.1f} {cpu:7.1f} {rate:10,.0f} {60 * rate:12,.0f} "
              f"{60 * n / max(cpu, 1e-9):12,.0f} {peak:8.0f} {done:>10,} {rej:>9,}")
        sys.stdout.flush()
    print("\n".join(["targets:", *target_lines(rows)]))
    return 0


def target_lines(rows: Sequence[tuple[int, float, float]]) -> list[str]:
    """The targets beside the measured figures, from (requests, requests per minute, peak
    MiB) per size; the memory target needs two sizes."""
    lines = [SPEED_TARGET.line(per_min, f"{n:,} requests") for n, per_min, _ in rows]
    if len(rows) >= 2:
        small, large = min(rows), max(rows)
        lines.append(
            MEMORY_TARGET.line(
                large[2] / small[2],
                f"{large[2]:.0f} MiB at {large[0]:,} requests, {small[2]:.0f} MiB at {small[0]:,}",
            )
        )
    return lines
