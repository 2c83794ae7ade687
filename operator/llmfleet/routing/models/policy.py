r"""The run-time knob of a router, and its calibration for a target quality drop.

**Decision.** With utility ``U`` (prompts x models, from a router), costs ``c`` and the
knob ``lambda >= 0``::

    m*(i) = argmax_m  U[i, m] - lambda * c~[i, m],      c~[i, m] = c[i, m] / S

with ``S`` a fixed cost scale (the calibration split's mean of ``max_k c[i, k]``), so that a
long, expensive query saves more by going to the small model than a short one: for two
models the queries go to the small one in increasing order of ``(U_r - U_s) / (c_r - c_s)``,
the knapsack order that maximises the cost saved per unit of expected quality lost. With
``scale=None`` the cost is relative per query instead, ``c~[i, m] = c[i, m] / max_k c[i, k]``
(the order ignores the queries' sizes: what the random baseline uses, so that it stays a
random share of queries). Ties go to the cheaper model. ``lambda = 0`` picks the best
expected answer, a large ``lambda`` the cheapest model. Hybrid LLM's quality threshold and
UniRoute's cost weight are both this ``lambda``.

**Quality drop and saving** against the reference model ``r`` on ``n`` prompts::

    drop(lambda)   = (1/n) sum_i  q[i, r] - q[i, m*(i)]          (points: x 100)
    saving(lambda) = 1 - sum_i c[i, m*(i)] / sum_i c[i, r]

**Calibration** (:func:`calibrate`) on a calibration split the router was not fitted on
(held out, or out-of-fold predictions). The candidate knobs ``0 = lambda_0 < lambda_1 < ...``
are the switch points of the calibration queries (for two models: each query's
``(U[i, r] - U[i, s]) / (c~[i, r] - c~[i, s])``; quantiles when there are many). For each,
the per-query losses ``l_i = q[i, r] - q[i, m*(i)]`` give an upper confidence bound of the
expected drop, by the paired bootstrap: ``B`` Poisson(1) weight vectors ``w_b``,
``UCB = quantile_{confidence}( sum_i w_bi l_i / sum_i w_bi )`` (``method="normal"``: the CLT
bound ``mean + z * sd / sqrt(n)`` instead). The knobs are tested in increasing order
(*fixed-sequence testing*, as in Learn-then-Test, Angelopoulos et al. 2021): the chosen knob
is the last one before the first whose bound exceeds the target, so no search over knobs
inflates the error rate. The bound holds for the *expected* drop on data like the
calibration split; the drop measured on a finite test split scatters around it by about
``sd / sqrt(n_test)`` — unless ``horizon=n_test`` asks for a prediction bound of that drop. If even ``lambda_0`` fails, every query goes to the reference model.

**Two bounds at once** (``overshoot``): a knob may also have to keep a *prediction* bound
of the drop measured on the next ``overshoot_horizon`` queries within
``target + overshoot`` at ``overshoot_confidence`` (the benchmark's "the drop of a test split
at most 0.5 point over the target in 95% of splits"); a knob passes when both bounds do, and
the fixed sequence stops at the first knob where either fails. With ``confidence=0.5`` the
first bound is the expected drop's point estimate (the mean drop on target), the second
the guard against a split's scatter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmfleet.routing.models.data import FloatArray, IntArray

#: Tie-break: a hair of relative cost so that equal utilities go to the cheaper model.
_TIE = 1e-9


def relative_cost(cost: FloatArray, scale: float | None = None) -> FloatArray:
    """``c / scale``, or with ``scale=None`` ``c[i, m] / max_k c[i, k]`` (1 where a query costs
    nothing anywhere)."""
    if scale is not None:
        return np.asarray(cost / scale, dtype=np.float64)
    top = cost.max(axis=1, keepdims=True)
    return np.asarray(np.divide(cost, top, out=np.ones_like(cost), where=top > 0), dtype=np.float64)


def cost_scale(cost: FloatArray) -> float:
    """``S = mean_i max_k c[i, k]`` (1 when everything is free)."""
    s = float(cost.max(axis=1).mean()) if cost.size else 0.0
    return s if s > 0 else 1.0


def route(
    utility: FloatArray, cost: FloatArray, lam: float | None, scale: float | None = None
) -> IntArray:
    """Each query's model: ``argmax_m U - lambda * c~`` (module docstring)."""
    if lam is None or lam < 0:
        raise ValueError(f"lambda must be a number >= 0, got {lam}")
    rel = relative_cost(cost, scale)
    score = utility - (lam + _TIE) * rel
    return np.asarray(np.argmax(score, axis=1), dtype=np.int64)


def switch_points(
    utility: FloatArray, cost: FloatArray, scale: float | None = None, max_points: int = 200
) -> FloatArray:
    """Candidate knobs, increasing, starting at 0 (module docstring).

    Query ``i`` can switch from model ``a`` to a cheaper ``b`` only at
    ``lambda = (U[i, a] - U[i, b]) / (c~[i, a] - c~[i, b])``; these ratios over all pairs
    (a superset of each query's switch points; quantiles when there are many) are the grid."""
    rel = relative_cost(cost, scale)
    m = utility.shape[1]
    found: list[FloatArray] = []
    for a in range(m):
        for b in range(m):
            du = utility[:, a] - utility[:, b]
            dc = rel[:, a] - rel[:, b]
            ok = np.isfinite(du) & (dc > 0) & (du > 0)
            found.append(du[ok] / dc[ok])
    ratio = np.concatenate(found) if found else np.zeros(0)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if ratio.size == 0:
        return np.zeros(1, dtype=np.float64)
    pts = np.unique(ratio)
    if pts.size > max_points:
        pts = np.unique(np.quantile(pts, np.linspace(0.0, 1.0, max_points)))
    # just past each switch point, so the query at that point has switched
    return np.concatenate([[0.0], pts * (1 + 1e-9) + 1e-12]).astype(np.float64)


@dataclass(frozen=True, eq=False)
class LengthCost:
    """A query's cost before it is answered: ``c^[i, m] = a_m + b_m * len(prompt_i)``, least
    squares on measured costs (``b_m >= 0``, clipped at 0). The output length, and so the
    measured cost, is only known after the answer; the decision must use this estimate."""

    intercept: FloatArray
    slope: FloatArray

    @staticmethod
    def fit(lengths: FloatArray, cost: FloatArray) -> LengthCost:
        x = np.asarray(lengths, dtype=np.float64)
        var = float(x.var())
        if var > 0:
            slope = ((x - x.mean())[:, None] * (cost - cost.mean(axis=0))).mean(axis=0) / var
        else:
            slope = np.zeros(cost.shape[1])
        slope = np.maximum(slope, 0.0)
        intercept = cost.mean(axis=0) - slope * x.mean()
        return LengthCost(
            np.asarray(intercept, dtype=np.float64), np.asarray(slope, dtype=np.float64)
        )

    def predict(self, lengths: FloatArray) -> FloatArray:
        x = np.asarray(lengths, dtype=np.float64)[:, None]
        est = self.intercept[None, :] + self.slope[None, :] * x
        return np.asarray(np.maximum(est, 1e-12), dtype=np.float64)


def losses(quality: FloatArray, choice: IntArray, reference: int) -> FloatArray:
    """Per-query quality loss ``q[i, r] - q[i, m*(i)]``."""
    rows = np.arange(quality.shape[0])
    return np.asarray(quality[:, reference] - quality[rows, choice], dtype=np.float64)


@dataclass(frozen=True)
class Calibration:
    """The calibrated knob and what the calibration split says about it.

    ``lam is None``: no knob met the bound, every query goes to the reference model.
    ``scale``: the cost scale of the decision (``None``: relative cost per query).
    Drops are shares (0.01 = 1 point)."""

    lam: float | None
    scale: float | None
    target_drop: float
    drop: float
    ucb_drop: float
    saving: float
    confidence: float
    method: str
    reference: int

    def choose(self, utility: FloatArray, cost: FloatArray) -> IntArray:
        """Each query's model under this calibration."""
        if self.lam is None:
            return np.full(utility.shape[0], self.reference, dtype=np.int64)
        return route(utility, cost, self.lam, self.scale)


def _saving(cost: FloatArray, choice: IntArray, reference: int) -> float:
    rows = np.arange(cost.shape[0])
    base = float(cost[:, reference].sum())
    return 1.0 - float(cost[rows, choice].sum()) / base if base > 0 else 0.0


def upper_bounds(
    loss: FloatArray, confidence: float, method: str = "bootstrap", n_boot: int = 400,
    seed: int = 0, horizon: int | None = None,
) -> FloatArray:  # fmt: skip
    """Upper ``confidence`` bounds of the mean of each column of ``loss`` (queries x knobs).

    ``horizon=None`` bounds the expected loss. ``horizon=N`` bounds instead the mean over the
    next ``N`` queries (a prediction bound): each bootstrap mean gets the sampling noise of
    ``N`` new queries, ``+ e_b * sd / sqrt(N)`` with ``e_b ~ N(0, 1)`` (normal method:
    ``mean + z * sd * sqrt(1/n + 1/N)``)."""
    n = loss.shape[0]
    sd = loss.std(axis=0, ddof=1) if n > 1 else np.zeros(loss.shape[1])
    extra = 0.0 if horizon is None else 1.0 / max(horizon, 1)
    if method == "normal":
        from statistics import NormalDist

        z = NormalDist().inv_cdf(confidence)
        return np.asarray(loss.mean(axis=0) + z * sd * np.sqrt(1.0 / n + extra), dtype=np.float64)
    if method != "bootstrap":
        raise ValueError(f"method must be 'bootstrap' or 'normal', got {method!r}")
    rng = np.random.default_rng(seed)
    w = rng.poisson(1.0, size=(n_boot, n)).astype(np.float32)
    means = (w @ loss.astype(np.float32)) / np.maximum(w.sum(axis=1, keepdims=True), 1.0)
    if horizon is not None:
        means = means + rng.standard_normal((n_boot, 1)) * sd[None, :] * np.sqrt(extra)
    return np.asarray(np.quantile(means, confidence, axis=0), dtype=np.float64)


def calibrate(
    utility: FloatArray,
    quality: FloatArray,
    cost: FloatArray,
    target_drop: float,
    confidence: float = 0.9,
    method: str = "bootstrap",
    reference: int | None = None,
    n_boot: int = 400,
    seed: int = 0,
    absolute: bool | None = True,
    decision_cost: FloatArray | None = None,
    horizon: int | None = None,
    overshoot: float | None = None,
    overshoot_confidence: float = 0.95,
    overshoot_horizon: int | None = None,
) -> Calibration:
    """The largest knob, in fixed sequence, whose drop bound stays within ``target_drop``.

    ``utility`` are the router's predictions for the calibration queries, ``quality`` and
    ``cost`` their measured values; ``absolute``: decide on cost over the calibration split's
    scale, else on the relative cost per query; ``None``: both, each tested at half the error
    rate (``1 - (1 - confidence) / 2``, Bonferroni: the union of the two tests keeps the
    error rate), keeping the one that saves more on the calibration split;
    ``decision_cost``: the costs the decision sees
    (an estimate known before answering, :class:`LengthCost`; default ``cost``), while the
    saving is measured on ``cost``; ``horizon``: bound the drop measured over that many new
    queries rather than the expected drop (:func:`upper_bounds`); ``overshoot``: also keep the
    prediction bound over ``overshoot_horizon`` queries (default: as many as calibrated on)
    at ``overshoot_confidence`` within ``target_drop + overshoot`` (module docstring)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0 < overshoot_confidence < 1:
        raise ValueError(f"overshoot_confidence must be in (0, 1), got {overshoot_confidence}")
    if overshoot is not None and overshoot < 0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot}")
    if target_drop < 0:
        raise ValueError(f"target_drop must be >= 0, got {target_drop}")
    ref = int(np.argmax(quality.mean(axis=0))) if reference is None else reference
    if absolute is None:
        half = 1.0 - (1.0 - confidence) / 2.0
        both = [
            calibrate(
                utility,
                quality,
                cost,
                target_drop,
                half,
                method,
                ref,
                n_boot,
                seed,
                order,
                decision_cost,
                horizon,
                overshoot,
                1.0 - (1.0 - overshoot_confidence) / 2.0,
                overshoot_horizon,
            )
            for order in (True, False)
        ]
        return max(both, key=lambda c: c.saving)  # ties: the absolute order (first)
    seen = cost if decision_cost is None else decision_cost
    scale = cost_scale(seen) if absolute else None
    grid = switch_points(utility, seen, scale)
    choices = [route(utility, seen, float(lam), scale) for lam in grid]
    loss = np.column_stack([losses(quality, ch, ref) for ch in choices])
    ucb = upper_bounds(loss, confidence, method, n_boot, seed, horizon)
    ok = ucb <= target_drop
    if overshoot is not None:
        horizon_n = quality.shape[0] if overshoot_horizon is None else overshoot_horizon
        pred = upper_bounds(loss, overshoot_confidence, method, n_boot, seed + 1, horizon_n)
        ok &= pred <= target_drop + overshoot
    if not ok[0]:
        return Calibration(None, scale, target_drop, 0.0, 0.0, 0.0, confidence, method, ref)
    last = int(np.argmin(ok)) - 1 if not ok.all() else len(grid) - 1
    return Calibration(
        lam=float(grid[last]),
        scale=scale,
        target_drop=target_drop,
        drop=float(loss[:, last].mean()),
        ucb_drop=float(ucb[last]),
        saving=_saving(cost, choices[last], ref),
        confidence=confidence,
        method=method,
        reference=ref,
    )
