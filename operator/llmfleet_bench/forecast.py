"""``llmfleet bench forecast``: errors per method, the auto choice, and speed.

:func:`backtest_report` is pure: histories in, a :class:`BacktestTable` out. :func:`main`
reads the histories with a loader, by default :func:`servegen_histories` (the ServeGen flows
of both pools, or one history per client), or any ``load(traces, step_seconds, per_client)``:

    from llmfleet_bench.forecast import main
    main(["--step", "600"], load=my_histories)

Columns (series = prompt tokens/s unless ``--series``), each a mean over the flows that had a
backtest: MAPE and WAPE of the point forecast (percent), pinball loss of the upper quantile as a
percentage of the series' mean, coverage of the upper quantile (calibrated: about the quantile),
how often ``auto`` chose the method, and forecasting time per flow (all three rates, backtest
included). Then its two targets, each beside its measured figure with a pass/miss mark:

* ``auto`` (the method picked per flow by rolling backtest) scores a WAPE no worse than the
  best single method's (:data:`AUTO_WAPE_OVER_BEST`): that is what choosing is for;
* the upper quantile is calibrated: its coverage under ``auto`` is within
  :data:`COVERAGE_TOLERANCE` of the quantile.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmfleet.forecast.forecaster import Candidate, MethodChoice, forecast
from llmfleet.forecast.types import DemandForecast, DemandHistory, Method, Series
from llmfleet.sim.traces import read_servegen_all, servegen_flows, servegen_history
from llmfleet_bench.targets import Threshold

METHODS: tuple[Candidate, ...] = ("arima", "seasonal", "naive")
Loader = Callable[[Path | None, int, bool], Sequence[DemandHistory]]

AUTO_WAPE_OVER_BEST = 1.0
"""``auto``'s WAPE over the best single method's WAPE, at most."""
COVERAGE_TOLERANCE = 0.1
"""How far the upper quantile's coverage may be from the quantile."""


def servegen_histories(
    path: Path | str | None, step_seconds: int, per_client: bool
) -> list[DemandHistory]:
    """The histories the benchmark runs on: the ServeGen flows of both pools
    (:func:`llmfleet.sim.traces.servegen_flows`), or one history per client when
    ``per_client``."""
    pools = read_servegen_all(path)
    if per_client:
        return [servegen_history(p, c, step_seconds) for p in pools.values() for c in p.clients]
    return servegen_flows(pools.values(), step_seconds)


@dataclass(frozen=True)
class BacktestRow:
    """Mean backtest errors of one method (or of ``auto``'s choices) over the flows."""

    method: str
    flows: int
    mape: float
    wape: float
    pinball_pct: float
    coverage: float
    chosen: int
    seconds_per_flow: float | None = None


@dataclass(frozen=True)
class BacktestTable:
    """The report: one row per method plus ``auto``."""

    rows: tuple[BacktestRow, ...]
    series: Series
    quantile: float
    horizon_steps: int
    step_seconds: int

    def render(self) -> str:
        """A Markdown table."""
        head = (
            f"forecast backtest: {self.series}, horizon {self.horizon_steps} x {self.step_seconds}s, "
            f"upper quantile {self.quantile}\n\n"
            "| method | flows | MAPE % | WAPE % | pinball % of mean | coverage | chosen by auto "
            "| ms per flow |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        )
        lines = [head]
        for r in self.rows:
            ms = "" if r.seconds_per_flow is None else f"{1000 * r.seconds_per_flow:.1f}"
            lines.append(
                f"| {r.method} | {r.flows} | {r.mape:.1f} | {r.wape:.1f} | {r.pinball_pct:.2f} "
                f"| {r.coverage:.2f} | {r.chosen} | {ms} |"
            )
        return "\n".join(lines)


def _scale(history: DemandHistory, series: Series) -> float:
    values = np.array(getattr(history.rates, f"{series}_per_s"), dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else 0.0


def backtest_report(
    histories: Sequence[DemandHistory],
    horizon_steps: int = 12,
    step_seconds: int | None = None,
    quantile: float = 0.9,
    folds: int = 4,
    series: Series = "prompt_tokens",
    forecasts: Sequence[DemandForecast] | None = None,
    seconds_per_flow: dict[str, float] | None = None,
) -> BacktestTable:
    """Backtest every candidate on every history (``auto``) and tabulate the errors on
    ``series``. Pass ``forecasts`` (from ``method="auto"``) to reuse them, and measured
    ``seconds_per_flow`` per method to show speed."""
    fcs = (
        list(forecasts)
        if forecasts is not None
        else [forecast(h, horizon_steps, step_seconds, "auto", quantile, folds) for h in histories]
    )
    scales = [_scale(h, series) for h in histories]
    timing = seconds_per_flow or {}
    rows: list[BacktestRow] = []
    names: tuple[MethodChoice, ...] = (*METHODS, "auto")
    for name in names:
        picked = []
        for f, s in zip(fcs, scales, strict=True):
            wanted: Method = f.method if name == "auto" else name
            e = f.error(wanted, series)
            if e is not None:
                picked.append((e, s))
        n = len(picked)

        def mean(values: list[float]) -> float:
            return float(np.mean(values)) if values else float("nan")

        rows.append(
            BacktestRow(
                method=name,
                flows=n,
                mape=mean([e.mape for e, _ in picked]),
                wape=mean([e.wape or 0.0 for e, _ in picked]),
                pinball_pct=mean([100 * e.pinball / s for e, s in picked if s > 0]),
                coverage=mean([e.coverage for e, _ in picked if e.coverage is not None]),
                chosen=sum(1 for f in fcs if f.method == name) if name != "auto" else len(fcs),
                seconds_per_flow=timing.get(name),
            )
        )
    step = step_seconds or (histories[0].step_seconds if histories else 0)
    return BacktestTable(tuple(rows), series, quantile, horizon_steps, step)


def _timed(
    histories: Sequence[DemandHistory], method: MethodChoice, args: argparse.Namespace
) -> tuple[list[DemandForecast], float]:
    t0 = time.perf_counter()  # measurement only, not logic
    out = [
        forecast(h, args.horizon, args.step, method, args.quantile, args.folds) for h in histories
    ]
    return out, (time.perf_counter() - t0) / max(1, len(histories))


def main(argv: Sequence[str] | None = None, load: Loader | None = None) -> int:
    """``llmfleet bench forecast``: print the backtest table over the ServeGen flows."""
    parser = argparse.ArgumentParser(prog="llmfleet bench forecast", description=__doc__)
    parser.add_argument("--step", type=int, default=600, help="planning step, seconds")
    parser.add_argument("--horizon", type=int, default=6, help="steps ahead")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--quantile", type=float, default=0.9)
    parser.add_argument("--per-client", action="store_true", help="one flow per ServeGen client")
    parser.add_argument("--traces", type=Path, default=None, help="traces directory")
    parser.add_argument(
        "--series", choices=["requests", "prompt_tokens", "output_tokens"], default="prompt_tokens"
    )
    args = parser.parse_args(argv)
    histories = (load or servegen_histories)(args.traces, args.step, args.per_client)
    timing: dict[str, float] = {}
    for m in METHODS:
        _, timing[m] = _timed(histories, m, args)
    fcs, timing["auto"] = _timed(histories, "auto", args)
    table = backtest_report(
        histories, args.horizon, args.step, args.quantile, args.folds, args.series, fcs, timing
    )
    print(f"{len(histories)} flows x {len(histories[0].rates) if histories else 0} steps")
    print(table.render())
    print("\n".join(["", "targets:", *target_lines(table)]))
    return 0


def target_lines(table: BacktestTable) -> list[str]:
    """Each target beside its measured figure, with a pass/miss mark."""
    rows = {r.method: r for r in table.rows}
    auto = rows["auto"]
    best = min((rows[m] for m in METHODS), key=lambda r: r.wape)
    wape = Threshold(
        f"auto WAPE over the best single method's ({best.method}, {best.wape:.1f}%)",
        AUTO_WAPE_OVER_BEST,
        "x",
    )
    calibration = Threshold(
        f"upper-quantile coverage under auto, distance to the quantile {table.quantile}",
        COVERAGE_TOLERANCE,
    )
    ratio = auto.wape / best.wape if best.wape > 0 else float("nan")
    return [
        wape.line(ratio),
        calibration.line(abs(auto.coverage - table.quantile), f"coverage {auto.coverage:.2f}"),
    ]
