"""Run one MathOpt solve under a watchdog.

HiGHS does not always honour its time limit (a 60 s limit took 197 s in our measurements),
so every solve runs in a forked child process: the child gets the solver's own time limit,
the parent waits ``time_limit + grace`` seconds and then kills it. The caller always
gets a :class:`SolverRun` back in time — with or without a solution.

This is process control, not I/O: nothing leaves the machine, no files are written.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from ortools.math_opt import (
    callback_pb2,
    model_parameters_pb2,
    model_pb2,
    parameters_pb2,
    result_pb2,
)
from ortools.math_opt.core.python import solver as core_solver

RunStatus = Literal["optimal", "feasible", "infeasible", "no-solution", "killed", "error"]

_HIGHS = parameters_pb2.SOLVER_TYPE_HIGHS
_REASONS: dict[int, RunStatus] = {
    result_pb2.TERMINATION_REASON_OPTIMAL: "optimal",
    result_pb2.TERMINATION_REASON_FEASIBLE: "feasible",
    result_pb2.TERMINATION_REASON_INFEASIBLE: "infeasible",
    result_pb2.TERMINATION_REASON_INFEASIBLE_OR_UNBOUNDED: "infeasible",
    result_pb2.TERMINATION_REASON_NO_SOLUTION_FOUND: "no-solution",
    result_pb2.TERMINATION_REASON_IMPRECISE: "feasible",
}


@dataclass(frozen=True)
class SolverRun:
    """Outcome of one solve."""

    status: RunStatus
    x: NDArray[np.float64] | None
    objective: float | None
    bound: float | None
    seconds: float
    message: str = ""
    peak_rss_mib: float = 0.0
    """Peak resident memory of the solver process (MiB)."""


def _child(
    conn: Connection,
    proto: model_pb2.ModelProto,
    time_limit: float,
    rel_gap: float,
    barrier: bool,
    hint: NDArray[np.float64] | None,
    threads: int,
    abs_gap: float | None = None,
) -> None:
    try:
        params = parameters_pb2.SolveParametersProto()
        params.time_limit.FromNanoseconds(int(time_limit * 1e9))
        params.relative_gap_tolerance = rel_gap
        if abs_gap is not None:
            params.absolute_gap_tolerance = abs_gap
        params.highs.int_options["threads"] = threads
        if barrier:
            params.lp_algorithm = parameters_pb2.LP_ALGORITHM_BARRIER
            params.highs.string_options["run_crossover"] = "off"
        mparams = model_parameters_pb2.ModelSolveParametersProto()
        if hint is not None:
            h = mparams.solution_hints.add()
            h.variable_values.ids.extend(range(len(hint)))
            h.variable_values.values.extend(hint.tolist())
        try:
            res = _solve(proto, params, mparams)
        except Exception as err:  # solver rejected an option: retry plain
            if not barrier and hint is None:
                raise
            params.ClearField("lp_algorithm")
            params.highs.string_options.clear()
            mparams.ClearField("solution_hints")
            del err
            res = _solve(proto, params, mparams)
        reason = _REASONS.get(res.termination.reason, "error")
        x = None
        obj = None
        if res.solutions and res.solutions[0].HasField("primal_solution"):
            ps = res.solutions[0].primal_solution
            x = np.zeros(len(proto.variables.ids))
            x[np.asarray(ps.variable_values.ids, dtype=np.int64)] = np.asarray(
                ps.variable_values.values
            )
            obj = ps.objective_value
        bound = res.termination.objective_bounds.dual_bound
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        conn.send((reason, x, obj, bound, res.termination.detail, peak))
    except Exception as err:  # report, never hang the parent
        conn.send(("error", None, None, None, f"{type(err).__name__}: {str(err)[:300]}", 0.0))
    finally:
        conn.close()


def solve(
    proto: model_pb2.ModelProto,
    time_limit: float,
    rel_gap: float = 1e-4,
    barrier: bool = False,
    hint: NDArray[np.float64] | None = None,
    threads: int = 2,
    grace: float = 2.0,
    abs_gap: float | None = None,
) -> SolverRun:
    """Solve ``proto`` with HiGHS in a child process; kill it after ``time_limit + grace``.

    A MIP stops at ``rel_gap`` or, when given, at the absolute gap ``abs_gap``."""
    start = time.perf_counter()
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child,
        args=(child, proto, max(time_limit, 0.05), rel_gap, barrier, hint, threads, abs_gap),
        daemon=True,
    )
    proc.start()
    child.close()
    deadline = start + time_limit + grace
    payload = None
    if parent.poll(max(deadline - time.perf_counter(), 0.0)):
        try:
            payload = parent.recv()
        except EOFError:
            payload = None
    if proc.is_alive():
        proc.kill()
    proc.join(1.0)
    seconds = time.perf_counter() - start
    if payload is None:
        killed = seconds >= time_limit + grace - 0.05
        return SolverRun(
            status="killed" if killed else "error",
            x=None,
            objective=None,
            bound=None,
            seconds=seconds,
            message=(
                f"solver exceeded its {time_limit:.1f}s limit and was stopped"
                if killed
                else f"solver process died (exit code {proc.exitcode})"
            ),
        )
    reason, x, obj, bound, detail, peak = payload
    status: RunStatus = reason
    if status == "no-solution" and x is not None:
        status = "feasible"
    return SolverRun(
        status=status,
        x=x,
        objective=obj,
        bound=None if bound is None or not np.isfinite(bound) else float(bound),
        seconds=seconds,
        message=str(detail),
        peak_rss_mib=float(peak),
    )


def _solve(proto: Any, params: Any, mparams: Any) -> Any:
    """One HiGHS solve through MathOpt's core solver (no callback, no interrupter)."""
    return core_solver.solve(
        proto,
        _HIGHS,
        parameters_pb2.SolverInitializerProto(),
        params,
        mparams,
        None,
        callback_pb2.CallbackRegistrationProto(),
        None,
        None,
    )
