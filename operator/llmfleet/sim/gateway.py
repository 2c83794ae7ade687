"""The twin's ingress: the tenants' fair-share limits a plan publishes, enforced per request.

The controller publishes each tenant's limits (a FleetPlan's ``spec.throttles``: tokens/s,
burst tokens, requests/s) to the ingress; the twin applies the same numbers where the
ingress would, before a request is routed:

    tokens bucket   rate L_i tokens/s, depth 60 L_i tokens
    request bucket  rate R_i requests/s, depth max(1, 60 R_i) requests

for the tenants whose limits are *enforced* (the plan's ``enforced``: they bite, or the quota
sets a budget); the depth of one minute is the ingress's per-minute rate-limit rules
(:mod:`llmfleet.kube.throttling`).

A request that finds either bucket short is *throttled* (one larger than the bucket passes
when the bucket is full and leaves it in debt): rejected at once with the reason
``throttled`` and counted (a 429 the client sees), never queued or lost silently. Later calls
of an interaction already under way are never throttled (as the ingress rules and the
schedulers exempt them, :mod:`llmfleet.fairness.limits`); a first call is charged its own
tokens. A tenant without a published limit is not limited.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from llmfleet.api.plan import TenantThrottle

THROTTLED = "throttled"
WINDOW_SECONDS = 60.0
"""The ingress's rate-limit rules count per minute: a bucket holds one minute of its rate."""


@dataclass
class _Bucket:
    rate: float
    depth: float
    level: float
    at: float

    def refill(self, now: float) -> None:
        self.level = min(self.depth, self.level + self.rate * max(now - self.at, 0.0))
        self.at = now

    def can_take(self, amount: float, now: float) -> bool:
        """A request fits when the bucket holds its tokens, or is full (one larger than the
        bucket passes then, and leaves the bucket in debt)."""
        self.refill(now)
        return self.level + 1e-9 >= min(amount, self.depth)

    def take(self, amount: float) -> None:
        self.level -= amount


@dataclass
class Gateway:
    """Per-tenant token and request buckets from the newest published limits."""

    tokens: dict[str, _Bucket] = field(default_factory=dict)
    requests: dict[str, _Bucket] = field(default_factory=dict)
    throttled: Counter[str] = field(default_factory=Counter)
    """Requests throttled per tenant."""

    def update(self, limits: Iterable[TenantThrottle], now: float) -> None:
        """The newest plan's limits; each bucket keeps its level (capped at its new depth)."""
        seen = set()
        for t in limits:
            if not t.enforced:
                continue
            seen.add(t.tenant)
            rate = max(float(t.tokens_per_second), 0.0)
            depth = WINDOW_SECONDS * rate
            self.tokens[t.tenant] = _refilled(self.tokens.get(t.tenant), rate, depth, now)
            rps = t.requests_per_second
            if rps is not None and math.isfinite(rps) and rps > 0:
                r_depth = max(1.0, WINDOW_SECONDS * rps)
                self.requests[t.tenant] = _refilled(self.requests.get(t.tenant), rps, r_depth, now)
            else:
                self.requests.pop(t.tenant, None)
        for gone in set(self.tokens) - seen:
            self.tokens.pop(gone)
            self.requests.pop(gone, None)

    def admit(self, tenant: str, tokens: float, call_index: int, now: float) -> bool:
        """Whether the request passes the ingress (module docstring)."""
        if call_index > 0:
            return True
        tb = self.tokens.get(tenant)
        rb = self.requests.get(tenant)
        if tb is None and rb is None:
            return True
        ok = (tb is None or tb.can_take(tokens, now)) and (rb is None or rb.can_take(1.0, now))
        if not ok:
            self.throttled[tenant] += 1
            return False
        if tb is not None:
            tb.take(tokens)
        if rb is not None:
            rb.take(1.0)
        return True


def _refilled(old: _Bucket | None, rate: float, depth: float, now: float) -> _Bucket:
    if old is None:
        return _Bucket(rate, depth, depth, now)
    old.refill(now)  # bring the level up to now at the old rate
    return _Bucket(rate, depth, min(old.level, depth), now)
