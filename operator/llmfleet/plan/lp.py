"""A vectorised (MI)LP builder exporting to an OR-Tools MathOpt ``ModelProto``.

MathOpt's Python modelling layer spends ~10 us per term; fleet models have millions of
terms, so constraints are added as numpy blocks (rows, columns, coefficients) and the
proto is filled from arrays in one go. Solving happens in :mod:`llmfleet.plan.runner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from ortools.math_opt import model_pb2

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

INF = float("inf")


@dataclass
class LinearProgram:
    """Columns with bounds, costs and integrality; rows ``lb <= A x <= ub``."""

    _lb: list[FloatArray] = field(default_factory=list)
    _ub: list[FloatArray] = field(default_factory=list)
    _obj: list[FloatArray] = field(default_factory=list)
    _int: list[NDArray[np.bool_]] = field(default_factory=list)
    _rlb: list[FloatArray] = field(default_factory=list)
    _rub: list[FloatArray] = field(default_factory=list)
    _ri: list[IntArray] = field(default_factory=list)
    _ci: list[IntArray] = field(default_factory=list)
    _v: list[FloatArray] = field(default_factory=list)
    n_cols: int = 0
    n_rows: int = 0
    row_family: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Constraint family name -> [first row, last row) (for reports and duals)."""

    def add_vars(
        self,
        shape: int | tuple[int, ...],
        lb: ArrayLike = 0.0,
        ub: ArrayLike = INF,
        cost: ArrayLike = 0.0,
        integer: ArrayLike = False,
    ) -> IntArray:
        """New columns shaped ``shape``; returns their ids in that shape."""
        ids = np.arange(self.n_cols, self.n_cols + int(np.prod(shape)), dtype=np.int64)
        n = ids.size
        self._lb.append(np.broadcast_to(np.asarray(lb, dtype=float), shape).reshape(n).copy())
        self._ub.append(np.broadcast_to(np.asarray(ub, dtype=float), shape).reshape(n).copy())
        self._obj.append(np.broadcast_to(np.asarray(cost, dtype=float), shape).reshape(n).copy())
        self._int.append(np.broadcast_to(np.asarray(integer, dtype=bool), shape).reshape(n).copy())
        self.n_cols += n
        return ids.reshape(shape)

    def add_rows(self, n: int, lb: ArrayLike = -INF, ub: ArrayLike = INF) -> IntArray:
        """``n`` new rows with bounds; returns their ids."""
        ids = np.arange(self.n_rows, self.n_rows + n, dtype=np.int64)
        self._rlb.append(np.broadcast_to(np.asarray(lb, dtype=float), (n,)).copy())
        self._rub.append(np.broadcast_to(np.asarray(ub, dtype=float), (n,)).copy())
        self.n_rows += n
        return ids

    def add_terms(self, rows: ArrayLike, cols: ArrayLike, coefs: ArrayLike) -> None:
        """Add ``coef * x[col]`` to each ``row`` (duplicates are summed)."""
        r = np.asarray(rows, dtype=np.int64).ravel()
        c = np.asarray(cols, dtype=np.int64).ravel()
        v = np.broadcast_to(np.asarray(coefs, dtype=float), np.asarray(rows).shape).ravel()
        keep = v != 0
        self._ri.append(r[keep])
        self._ci.append(c[keep])
        self._v.append(v[keep].astype(float))

    def set_objective(self, cost: FloatArray) -> None:
        """Replace every column cost at once (length ``n_cols``)."""
        self._obj = [np.asarray(cost, dtype=float).copy()]

    def family(self, name: str, first: int) -> None:
        self.row_family[name] = (first, self.n_rows)

    # --- views -----------------------------------------------------------------------
    def column_arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
        cat = np.concatenate
        if not self._lb:
            e = np.zeros(0)
            return e, e, e, np.zeros(0, dtype=bool)
        return cat(self._lb), cat(self._ub), cat(self._obj), cat(self._int)

    def matrix(self) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]:
        """Rows sorted (row, col) with duplicates summed, and row bounds."""
        if not self._ri:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0), np.zeros(0), np.zeros(0)
        r = np.concatenate(self._ri)
        c = np.concatenate(self._ci)
        v = np.concatenate(self._v)
        key = r * max(self.n_cols, 1) + c
        order = np.argsort(key, kind="stable")
        key, v = key[order], v[order]
        uk, start = np.unique(key, return_index=True)
        vs = np.add.reduceat(v, start) if v.size else v
        rr, cc = uk // max(self.n_cols, 1), uk % max(self.n_cols, 1)
        rlb = np.concatenate(self._rlb) if self._rlb else np.zeros(0)
        rub = np.concatenate(self._rub) if self._rub else np.zeros(0)
        return rr, cc, vs, rlb, rub

    def to_proto(
        self,
        integer: bool = True,
        fixed: dict[int, float] | None = None,
        bounds: tuple[FloatArray, FloatArray] | None = None,
    ) -> model_pb2.ModelProto:
        """The MathOpt model; ``integer=False`` relaxes every integer column;
        ``bounds`` overrides column bounds (e.g. to fix integers)."""
        lb, ub, obj, isint = self.column_arrays()
        if bounds is not None:
            lb, ub = bounds
        rr, cc, vs, rlb, rub = self.matrix()
        p = model_pb2.ModelProto(name="llmfleet-plan")
        ids = np.arange(self.n_cols, dtype=np.int64)
        p.variables.ids.extend(ids.tolist())
        p.variables.lower_bounds.extend(lb.tolist())
        p.variables.upper_bounds.extend(ub.tolist())
        p.variables.integers.extend((isint & integer).tolist())
        nz = np.flatnonzero(obj)
        p.objective.linear_coefficients.ids.extend(nz.tolist())
        p.objective.linear_coefficients.values.extend(obj[nz].tolist())
        p.linear_constraints.ids.extend(range(self.n_rows))
        p.linear_constraints.lower_bounds.extend(rlb.tolist())
        p.linear_constraints.upper_bounds.extend(rub.tolist())
        p.linear_constraint_matrix.row_ids.extend(rr.tolist())
        p.linear_constraint_matrix.column_ids.extend(cc.tolist())
        p.linear_constraint_matrix.coefficients.extend(vs.tolist())
        return p

    def restricted_proto(
        self,
        free: NDArray[np.bool_],
        x_fixed: FloatArray,
        integer: NDArray[np.bool_],
        lb: FloatArray | None = None,
        ub: FloatArray | None = None,
    ) -> tuple[model_pb2.ModelProto, IntArray]:
        """The model over the ``free`` columns only, every other column fixed at ``x_fixed``.

        Fixed columns move to the row bounds (``rlb - A_fix x_fix <= A_free y <= rub - A_fix
        x_fix``); rows without a free column are dropped; the objective loses the constant
        ``c_fix . x_fix``. ``lb``/``ub`` override the free columns' bounds (full length).
        Returns the proto (variable ``j`` is column ``cols[j]``) and ``cols``.
        """
        clb, cub, obj, _ = self.column_arrays()
        lb = clb if lb is None else lb
        ub = cub if ub is None else ub
        rr, cc, vs, rlb, rub = self.matrix()
        cols = np.flatnonzero(free).astype(np.int64)
        new_id = np.full(self.n_cols, -1, dtype=np.int64)
        new_id[cols] = np.arange(cols.size)
        is_free = free[cc]
        shift = np.zeros(self.n_rows)
        np.add.at(shift, rr[~is_free], vs[~is_free] * x_fixed[cc[~is_free]])
        keep_rows = np.unique(rr[is_free])
        row_id = np.full(self.n_rows, -1, dtype=np.int64)
        row_id[keep_rows] = np.arange(keep_rows.size)
        p = model_pb2.ModelProto(name="llmfleet-plan-restricted")
        p.variables.ids.extend(range(cols.size))
        p.variables.lower_bounds.extend(lb[cols].tolist())
        p.variables.upper_bounds.extend(ub[cols].tolist())
        p.variables.integers.extend(integer[cols].tolist())
        nz = np.flatnonzero(obj[cols])
        p.objective.linear_coefficients.ids.extend(nz.tolist())
        p.objective.linear_coefficients.values.extend(obj[cols][nz].tolist())
        p.linear_constraints.ids.extend(range(keep_rows.size))
        p.linear_constraints.lower_bounds.extend((rlb[keep_rows] - shift[keep_rows]).tolist())
        p.linear_constraints.upper_bounds.extend((rub[keep_rows] - shift[keep_rows]).tolist())
        # entries are sorted by (row, col) and row/col renumbering is monotone
        p.linear_constraint_matrix.row_ids.extend(row_id[rr[is_free]].tolist())
        p.linear_constraint_matrix.column_ids.extend(new_id[cc[is_free]].tolist())
        p.linear_constraint_matrix.coefficients.extend(vs[is_free].tolist())
        return p, cols

    def objective_of(self, x: FloatArray) -> float:
        _, _, obj, _ = self.column_arrays()
        return float(obj @ x)

    def max_violation(self, x: FloatArray) -> float:
        """Largest bound or row violation of ``x`` (debugging and tests)."""
        lb, ub, _, _ = self.column_arrays()
        rr, cc, vs, rlb, rub = self.matrix()
        ax = np.zeros(self.n_rows)
        np.add.at(ax, rr, vs * x[cc])
        viol = [
            np.max(np.maximum(lb - x, 0), initial=0),
            np.max(np.maximum(x - ub, 0), initial=0),
            np.max(np.maximum(rlb - ax, 0), initial=0),
            np.max(np.maximum(ax - rub, 0), initial=0),
        ]
        return float(max(viol))
