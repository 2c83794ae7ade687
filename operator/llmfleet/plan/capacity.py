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

4. **Headroom.** The planner fills only the tier's target utilisation ``rho``:

       throughput = rho * min(mu(p), little).

Deadline tiers have no latency target, so only 1 and 4 apply (``c = C``).

Note: ``little >= mu`` exactly when ``c >= 1`` (expand ``c L / W(c) >= mu``), so with these
formulas a tier's latency targets act as feasibility filters (2, and ``c < 1`` -> 0) and
the headroom comes from ``rho``; a decode rate that falls with batch size would make the
Little's-law cap bind — the simulator's measurements will tell whether that is needed.
Spot replicas count at ``1 - loss`` (see :func:`spot_loss`).
"""

from __future__ import annotations

from llmfleet.plan.instance import ProfileSpec, TierSpec


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
    return tier.target_utilization * min(mu, little)  # (4)


def spot_loss(interruption_rate_per_hour: float, downtime_seconds: float) -> float:
    """Expected fraction of time a spot replica is down: interruptions/h x downtime/3600.

    ``downtime_seconds`` is node provisioning plus model load; capped at 1.
    """
    return min(1.0, max(0.0, interruption_rate_per_hour * downtime_seconds / 3600.0))
