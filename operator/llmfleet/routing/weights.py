"""Fractions -> integer weights that sum to a fixed total (largest remainder method).

Gateways take integer weights (Gateway API ``backendRefs[].weight``). Given fractions
``f_i >= 0`` of ``n`` regions with ``F = sum_i f_i > 0`` and a total ``T``:

1. quota ``q_i = T * f_i / F`` (fractions are renormalised, so rounding noise in the plan
   does not leak into the weights);
2. ``w_i = floor(q_i)``; the remainder ``R = T - sum_i w_i < n`` goes one unit each to the
   ``R`` largest fractional parts ``q_i - w_i`` (ties: region name, so the result is stable);
3. a region with ``f_i > 0`` never gets ``w_i = 0`` (it would silently stop receiving traffic
   the plan sends there): each such region gets 1, taken from the largest weight (ties: name).

After step 2, ``|w_i - q_i| < 1`` and ``sum_i w_i = T``. Step 3 moves at most one unit per
bumped region, so ``|w_i - q_i| < 1 + k`` with ``k`` the number of bumped regions, and the
sum stays ``T``. Order is kept where no region is bumped: ``q_a > q_b => w_a >= w_b``. It needs ``T >=`` the number of positive fractions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

DEFAULT_TOTAL = 1000


def integer_weights(fractions: Mapping[str, float], total: int = DEFAULT_TOTAL) -> dict[str, int]:
    """Integer weights summing to ``total`` for the regions with a positive fraction.

    Regions with fraction 0 are left out; an empty or all-zero input gives ``{}``.
    Raises ``ValueError`` for a negative or non-finite fraction, or when ``total`` is
    smaller than the number of positive fractions.
    """
    for region, f in fractions.items():
        if not math.isfinite(f) or f < 0:
            raise ValueError(f"fraction of region {region!r} must be finite and >= 0, got {f}")
    positive = {r: f for r, f in fractions.items() if f > 0}
    if not positive:
        return {}
    if total < len(positive):
        raise ValueError(
            f"total {total} is smaller than the {len(positive)} regions with a positive fraction"
        )
    mass = math.fsum(positive.values())
    quota = {r: total * f / mass for r, f in positive.items()}
    weights = {r: math.floor(q) for r, q in quota.items()}
    remainder = total - sum(weights.values())
    by_fraction = sorted(quota, key=lambda r: (-(quota[r] - weights[r]), r))
    for r in by_fraction[:remainder]:
        weights[r] += 1
    for r in sorted(weights):
        if weights[r] == 0:
            donor = min(weights, key=lambda d: (-weights[d], d))
            weights[donor] -= 1
            weights[r] = 1
    return dict(sorted(weights.items()))
