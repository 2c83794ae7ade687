r"""Capacity model: what one replica of a model on one GPU type sustains for a tier.

Notation for one replica (an :class:`~llmfleet.plan.instance.ProfileSpec`):
``P`` prefill tokens/s and ``D`` decode tokens/s at full batch, ``C`` max concurrent
sequences; for the load: prompt share ``p`` of its tokens (``1 - p`` output), ``L_in`` and
``L_out`` prompt/output tokens per request, ``L = L_in + L_out``.

1. **Token mix.** A prompt token costs the replica ``1/P`` seconds, an output token
   ``1/D``; a token stream with prompt share ``p`` therefore sustains

       mu(p) = 1 / (p/P + (1 - p)/D)      tokens/s (prompt + output).

2. **TTFT.** A prompt is prefilled at ``P``: if ``L_in / P`` exceeds the tier's TTFT the
   GPU cannot serve the tier at all (throughput 0).

3. **Concurrency (Little's law).** With ``c`` sequences in flight each decodes at
   ``D / c`` tokens/s, so a request stays ``W(c) = L_in/P + L_out * c / D`` seconds.
   ``c`` is capped by ``C``, by the tier's TPOT (``c / D <= tpot`` -> ``c <= D * tpot``)
   and by its end-to-end target (``W(c) <= e2e`` -> ``c <= (e2e - L_in/P) * D / L_out``).
   Little's law ``N = X * W`` then bounds the token rate by

       little = c * L / W(c)              tokens/s.

4. **TTFT at the percentile (M/G/1 prefill).** Prompts are prefilled one at a time ahead
   of decoding, so a replica's prefill is an M/G/1 server: Poisson arrivals at
   ``lambda = X / L`` requests/s for a load of ``X`` tokens/s, service ``S = L_in / P`` with
   squared coefficient of variation ``c2`` (of the prompt lengths, :data:`PROMPT_SCV`),
   utilisation ``r = lambda E[S] = X p / P``. Pollaczek-Khinchine gives the mean wait

       E[W] = r E[S] (1 + c2) / (2 (1 - r)),

   and the wait's tail is close to exponential, ``P(W > t) ~ r exp(-t r / E[W])``
   (Kingman's heavy-traffic form, exact for M/M/1), so its ``q`` quantile is

       w_q(r) = (E[W] / r) ln(r / (1 - q))      (0 when r <= 1 - q).

   A request's TTFT is its wait plus its own prefill; the ``q`` quantile of the sum is
   bounded by the sum of the quantiles, ``w_q(r) + s_q``, with ``s_q`` the ``q`` quantile of
   ``S`` (prompt lengths lognormal with the mean and ``c2``:
   ``s_q = E[S] exp(z_q sigma - sigma^2 / 2)``, ``sigma^2 = ln(1 + c2)``). The tier's TTFT
   target ``T`` at its percentile (``q`` = :data:`TTFT_QUANTILE`) holds while
   ``w_q(r) + s_q <= T``; ``w_q`` grows with ``r``, so bisection finds the largest such
   ``r*`` and the load it allows, ``slo = r* P / p`` tokens/s (:func:`slo_load`).

5. **Headroom.** The planner fills only the tier's target utilisation ``rho`` of the
   full-batch rate:

       throughput = rho * min(mu(p), little).

   (4) is computed (:func:`slo_load`) and checked against the twin on one replica (at
   ``slo`` the TTFT percentile holds, at 1.6 ``slo`` it does not), but it is not the
   planner's cap. Measured 2026-12-03 with it as ``min(rho * ..., slo)``: on the default
   scenario it moved the oracle from 95.8% to 100% of hours in SLO and left llmfleet's
   hours where they were for 14% more USD; on the storm scenario it nearly doubled
   llmfleet's cost (40.8k -> 78.8k USD) and, with pools at their maxNodes, the fair-share
   limits then throttled well-behaved tenants (a fast-tier tenant at 44% in SLO). The bound
   is conservative (the sum of the wait's and the service's quantiles, a prompt SCV of 1.5
   for every flow); where ``rho`` already holds the tail the cap only buys GPUs. The
   within-step variability it was meant to cover is the burst reserve's
   (:mod:`llmfleet.forecast.forecaster`).

Deadline tiers have no latency target, so only 1 and 4 apply (``c = C``).

Note: ``little >= mu`` exactly when ``c >= 1`` (expand ``c L / W(c) >= mu``), so the
Little's-law cap acts as a feasibility filter (2, and ``c < 1`` -> 0). The headroom comes
from ``rho`` where the prefill is quick against the target, and from (4) where it is not:
long prompts on a slow prefill (a 70B or 405B model under a 1 s target) reach the target's
percentile before ``rho`` of the full-batch rate. (4) is a steady-state bound: the variability
inside a planning step is the forecast's upper band's (the planner sizes each step for it).
Spot replicas count at ``1 - loss`` (see :func:`spot_loss`).
"""

from __future__ import annotations

import math
from statistics import NormalDist

from llmfleet.plan.instance import ProfileSpec, TierSpec

PROMPT_SCV = 1.5
"""Squared coefficient of variation of prompt lengths (4): the traces' prompts are
heavy-tailed (Azure 2023 conversation ~1.3, code ~1.0; ServeGen clients 0.5-3)."""
TTFT_QUANTILE = 0.95
"""The percentile of the tiers' TTFT targets (``ttftP95Seconds``)."""


def mix_throughput(profile: ProfileSpec, prompt_share: float) -> float:
    """(1) Tokens/s (prompt + output) of one replica at full batch for prompt share ``p``."""
    p = min(max(prompt_share, 0.0), 1.0)
    return 1.0 / (p / profile.prefill_tokens_per_s + (1.0 - p) / profile.decode_tokens_per_s)


def effective_concurrency(
    profile: ProfileSpec, tier: TierSpec, prompt_tokens: float, output_tokens: float
) -> float:
    """(3) Sequences in flight the replica may hold while meeting the tier's targets."""
    c = float(profile.max_concurrency)
    prefill = prompt_tokens / profile.prefill_tokens_per_s
    if tier.tpot_s is not None:
        c = min(c, profile.decode_tokens_per_s * tier.tpot_s)
    if tier.e2e_s is not None and output_tokens > 0:
        c = min(c, (tier.e2e_s - prefill) * profile.decode_tokens_per_s / output_tokens)
    return max(c, 0.0)


def wait_quantile(r: float, service_s: float, scv: float = PROMPT_SCV,
                  q: float = TTFT_QUANTILE) -> float:
    """(4) The ``q`` quantile of the M/G/1 prefill wait at utilisation ``r`` for a mean
    service ``service_s`` (``inf`` at ``r >= 1``)."""
    if r >= 1.0:
        return math.inf
    if r <= 1.0 - q:
        return 0.0
    mean_wait = r * service_s * (1.0 + scv) / (2.0 * (1.0 - r))
    return (mean_wait / r) * math.log(r / (1.0 - q))


def service_quantile(service_s: float, scv: float = PROMPT_SCV,
                     q: float = TTFT_QUANTILE) -> float:
    """(4) The ``q`` quantile of a lognormal prefill time of mean ``service_s`` and squared
    coefficient of variation ``scv``."""
    if scv <= 0:
        return service_s
    sigma = math.sqrt(math.log1p(scv))
    return service_s * math.exp(NormalDist().inv_cdf(q) * sigma - sigma * sigma / 2)


def slo_load(profile: ProfileSpec, tier: TierSpec, prompt_share: float,
             prompt_tokens: float, scv: float = PROMPT_SCV) -> float:
    """(4) The largest load, tokens/s (prompt + output), at which the tier's TTFT target
    holds at its percentile on one replica; ``inf`` without a TTFT target or prompt."""
    if tier.ttft_s is None or prompt_share <= 0 or prompt_tokens <= 0:
        return math.inf
    service = prompt_tokens / profile.prefill_tokens_per_s
    budget = tier.ttft_s - service_quantile(service, scv)
    if budget <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(50):  # w_q is increasing in r: bisection to ~1e-15
        mid = 0.5 * (lo + hi)
        if wait_quantile(mid, service, scv) <= budget:
            lo = mid
        else:
            hi = mid
    return lo * profile.prefill_tokens_per_s / min(prompt_share, 1.0)


def replica_throughput(
    profile: ProfileSpec,
    tier: TierSpec,
    prompt_share: float,
    tokens_per_request: float,
) -> float:
    """Sustained tokens/s of one replica for ``tier`` at the tier's target utilisation.

    ``prompt_share`` is the prompt fraction of the load's tokens and
    ``tokens_per_request`` its mean prompt + output tokens per request. Returns 0 when the
    GPU cannot meet the tier's TTFT or end-to-end target even with one sequence.
    """
    mu = mix_throughput(profile, prompt_share)
    if tier.kind == "deadline":
        return tier.target_utilization * mu
    prompt = prompt_share * tokens_per_request
    output = tokens_per_request - prompt
    prefill = prompt / profile.prefill_tokens_per_s
    if tier.ttft_s is not None and prefill > tier.ttft_s:  # (2)
        return 0.0
    c = effective_concurrency(profile, tier, prompt, output)
    if c < 1.0:
        return 0.0
    residence = prefill + output * c / profile.decode_tokens_per_s
    little = c * tokens_per_request / residence if residence > 0 else mu
    return tier.target_utilization * min(mu, little)  # (5)


def spot_loss(interruption_rate_per_hour: float, downtime_seconds: float) -> float:
    """Expected fraction of time a spot replica is down: interruptions/h x downtime/3600.

    ``downtime_seconds`` is node provisioning plus model load; capped at 1.
    """
    return min(1.0, max(0.0, interruption_rate_per_hour * downtime_seconds / 3600.0))
