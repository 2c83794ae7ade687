r"""How good a router is: its cost-quality curve, APGR, AIQ, the saving at a drop, AUC.

A router swept over its knob ``lambda`` (:func:`tradeoff_curve`) gives points
``(cost_j, quality_j, share_j)``: mean cost and quality per query, and the share of queries
sent to the reference (strong) model.

* **APGR** (RouteLLM, Ong et al., arXiv 2406.18665) — the performance gap recovered
  ``PGR = (q - q_weak) / (q_strong - q_weak)`` as a function of the strong-call share ``s``,
  averaged over ``s in [0, 1]``: ``APGR = int_0^1 PGR(s) ds``. The curve is linear between
  its points (ties in ``s``: the best quality) and runs from ``(0, 0)`` (all weak) to
  ``(1, 1)`` (all strong). Random routing gives 0.5; above 1 is possible (the oracle).
* **AIQ** (RouterBench, Hu et al., arXiv 2403.12031) — the average of the *non-decreasing
  convex hull* ``R~(c)`` of the points over the cost range ``[c_min, c_max]``:
  ``AIQ = 1/(c_max - c_min) int R~(c) dc``. ``R~`` is the upper concave envelope of the
  points (any mix of two routed configurations is reachable by routing a share of queries
  with each) made flat after its highest point (paying more never has to lower quality).
  The caller includes the end points (all cheapest, all reference) among the points.
* **saving at a drop** — the largest ``1 - cost / cost_ref`` among points whose drop
  ``q_ref - q`` is at most the allowed drop (read on the curve of the same data: optimistic,
  it picks the knob with the labels it is measured on; the calibrated knob is the honest one).
* **AUC** — the probability that a random positive scores above a random negative
  (Mann-Whitney U / (n+ n-), ties count one half).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmfleet.routing.models.data import FloatArray, IntArray
from llmfleet.routing.models.policy import route


@dataclass(frozen=True)
class Outcome:
    """What one choice of models did on a set: mean quality and cost per query, the drop and
    saving against the reference model, and the share of queries sent to it."""

    quality: float
    cost: float
    drop: float
    saving: float
    reference_share: float


def outcome(quality: FloatArray, cost: FloatArray, choice: IntArray, reference: int) -> Outcome:
    """The :class:`Outcome` of sending query ``i`` to model ``choice[i]``."""
    rows = np.arange(quality.shape[0])
    q = float(quality[rows, choice].mean())
    c = float(cost[rows, choice].mean())
    q_ref = float(quality[:, reference].mean())
    c_ref = float(cost[:, reference].mean())
    return Outcome(
        quality=q,
        cost=c,
        drop=q_ref - q,
        saving=1.0 - c / c_ref if c_ref > 0 else 0.0,
        reference_share=float(np.mean(choice == reference)),
    )


@dataclass(frozen=True, eq=False)
class Curve:
    """A router's points over its knob: mean cost, mean quality, reference share."""

    cost: FloatArray
    quality: FloatArray
    share: FloatArray


def tradeoff_curve(
    utility: FloatArray,
    quality: FloatArray,
    cost: FloatArray,
    reference: int,
    knobs: FloatArray,
    scale: float | None = None,
    decision_cost: FloatArray | None = None,
) -> Curve:
    """The router's points at each knob (cost ``scale`` as in :func:`route`; the decision
    sees ``decision_cost``, default ``cost``), plus all-cheapest and all-reference."""
    seen = cost if decision_cost is None else decision_cost
    cheapest = int(np.argmin(cost.mean(axis=0)))
    n = quality.shape[0]
    outs = [outcome(quality, cost, route(utility, seen, float(k), scale), reference) for k in knobs]
    outs.append(outcome(quality, cost, np.full(n, cheapest, dtype=np.int64), reference))
    outs.append(outcome(quality, cost, np.full(n, reference, dtype=np.int64), reference))
    return Curve(
        cost=np.array([o.cost for o in outs]),
        quality=np.array([o.quality for o in outs]),
        share=np.array([o.reference_share for o in outs]),
    )


def apgr(share: FloatArray, quality: FloatArray, q_weak: float, q_strong: float) -> float:
    """Average performance gap recovered over strong-call shares in [0, 1] (module docstring)."""
    gap = q_strong - q_weak
    if gap <= 0:
        raise ValueError(f"the strong model must be better than the weak one (gap {gap})")
    pgr = (np.asarray(quality, dtype=np.float64) - q_weak) / gap
    s = np.asarray(share, dtype=np.float64)
    xs = np.concatenate([[0.0], s, [1.0]])
    ys = np.concatenate([[0.0], pgr, [1.0]])
    uniq = np.unique(xs)
    best = np.array([ys[xs == u].max() for u in uniq])
    # at s = 0 and s = 1 the routes are fixed (all weak, all strong)
    best[0] = 0.0 if uniq[0] == 0.0 else best[0]
    best[-1] = 1.0 if uniq[-1] == 1.0 else best[-1]
    return float(np.sum(np.diff(uniq) * (best[1:] + best[:-1]) / 2.0))


def _upper_hull(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    order = np.lexsort((-y, x))
    hx: list[float] = []
    hy: list[float] = []
    for px, py in zip(x[order], y[order], strict=True):
        if hx and px == hx[-1]:
            continue  # same cost, lower quality (sorted by -y within a cost)
        while len(hx) >= 2:
            cross = (hx[-1] - hx[-2]) * (py - hy[-2]) - (hy[-1] - hy[-2]) * (px - hx[-2])
            if cross >= 0:  # the last point is on or below the chord: not on the upper hull
                hx.pop()
                hy.pop()
            else:
                break
        hx.append(float(px))
        hy.append(float(py))
    return np.array(hx), np.array(hy)


def aiq(cost: FloatArray, quality: FloatArray, c_min: float, c_max: float) -> float:
    """Average quality of the non-decreasing convex hull over [c_min, c_max] (module docstring)."""
    if c_max <= c_min:
        raise ValueError(f"c_max must exceed c_min, got [{c_min}, {c_max}]")
    c = np.clip(np.asarray(cost, dtype=np.float64), c_min, c_max)
    hx, hy = _upper_hull(c, np.asarray(quality, dtype=np.float64))
    hy = np.maximum.accumulate(hy)
    xs = np.concatenate([[c_min], hx, [c_max]])
    ys = np.concatenate([[hy[0]], hy, [hy[-1]]])
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0) / (c_max - c_min))


def saving_at_drop(curve: Curve, q_ref: float, c_ref: float, max_drop: float) -> float:
    """The largest saving among the curve's points with drop <= ``max_drop`` (0 if none)."""
    ok = (q_ref - curve.quality) <= max_drop + 1e-12
    if not ok.any() or c_ref <= 0:
        return 0.0
    return float(max(0.0, 1.0 - curve.cost[ok].min() / c_ref))


def auc(score: FloatArray, positive: np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties one half; NaN when a
    class is empty."""
    pos = np.asarray(positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # midranks of tied blocks
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
