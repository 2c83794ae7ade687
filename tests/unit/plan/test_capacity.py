import math

import pytest

from llmfleet.plan.capacity import (
    effective_concurrency,
    mix_throughput,
    replica_throughput,
    service_quantile,
    slo_load,
    spot_loss,
    wait_quantile,
)
from llmfleet.plan.instance import ProfileSpec, TierSpec

PROF = ProfileSpec(
    "H100", 1, prefill_tokens_per_s=24000, decode_tokens_per_s=6000, max_concurrency=256
)


def test_mix_throughput_is_the_harmonic_token_mix() -> None:
    p = 0.8
    assert mix_throughput(PROF, p) == pytest.approx(1 / (p / 24000 + (1 - p) / 6000))
    assert mix_throughput(PROF, 1.0) == pytest.approx(24000)
    assert mix_throughput(PROF, 0.0) == pytest.approx(6000)


def test_deadline_tier_gets_target_utilisation_of_the_mix() -> None:
    tier = TierSpec("b", "deadline", deadline_s=3600, target_utilization=0.9)
    assert replica_throughput(PROF, tier, 0.8, 2000) == pytest.approx(
        0.9 * mix_throughput(PROF, 0.8)
    )


def test_ttft_that_prefill_alone_misses_gives_zero() -> None:
    tier = TierSpec("i", "interactive", ttft_s=0.01)
    assert replica_throughput(PROF, tier, 0.9, 10000) == 0.0


def test_tpot_caps_concurrency_by_decode_rate() -> None:
    tier = TierSpec("i", "interactive", ttft_s=2.0, tpot_s=0.01)
    assert effective_concurrency(PROF, tier, 1000, 200) == pytest.approx(60)  # D * tpot


def test_e2e_target_feasibility_and_littles_law() -> None:
    loose = TierSpec("i", "interactive", ttft_s=2.0, e2e_s=600, target_utilization=1.0)
    impossible = TierSpec("i", "interactive", ttft_s=2.0, e2e_s=0.1, target_utilization=1.0)
    mu = mix_throughput(PROF, 0.5)
    # one sequence needs 1000/24000 + 1000/6000 = 0.21 s > 0.1 s: the GPU cannot serve it
    assert replica_throughput(PROF, impossible, 0.5, 2000) == 0.0
    # with >= 1 sequence allowed, Little's law c*L/W(c) >= mu: the token mix binds
    assert replica_throughput(PROF, loose, 0.5, 2000) == pytest.approx(mu)
    c = effective_concurrency(PROF, loose, 1000, 1000)
    assert c * 2000 / (1000 / 24000 + 1000 * c / 6000) >= mu


def test_spot_loss_is_rate_times_downtime() -> None:
    assert spot_loss(0.06, 600) == pytest.approx(0.01)
    assert spot_loss(10, 3600) == 1.0
    assert not math.isnan(spot_loss(0, 0))


def test_the_mg1_wait_quantile_is_zero_at_light_load_and_grows_to_infinity() -> None:
    assert wait_quantile(0.04, 0.1) == 0.0  # P(W > 0) = r < 5%
    qs = [wait_quantile(r, 0.1) for r in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert qs == sorted(qs) and qs[0] > 0
    assert wait_quantile(1.0, 0.1) == math.inf
    # M/M/1 (c2 = 1): W's tail is exactly r exp(-t (1 - r) / E[S])
    r, s = 0.6, 0.2
    t = wait_quantile(r, s, scv=1.0)
    assert r * math.exp(-t * (1 - r) / s) == pytest.approx(0.05)


def test_long_prompts_on_a_slow_prefill_have_a_low_slo_true_load() -> None:
    slow = ProfileSpec("A100", 4, prefill_tokens_per_s=6500, decode_tokens_per_s=1300,
                       max_concurrency=192)
    fast = TierSpec("f", "interactive", ttft_s=1.0, target_utilization=0.6)
    share = 1500 / 1900
    cap = slo_load(slow, fast, share, 1500)
    assert 0 < cap < 0.6 * mix_throughput(slow, share)  # (4) would bind before rho does
    # prompts whose 95th-percentile prefill alone exceeds the target: the GPU cannot serve
    # the tier at its percentile at any load
    assert service_quantile(4000 / 6500) > 1.0
    assert slo_load(slow, fast, 4000 / 4400, 4000) == 0.0
    # short prompts: far above what the target utilisation fills
    assert slo_load(slow, fast, 0.5, 200) > 0.6 * mix_throughput(slow, 0.5)
    # a looser target allows more load; no TTFT target, no cap
    assert slo_load(slow, TierSpec("n", "interactive", ttft_s=5.0), share, 1500) > cap
    assert slo_load(slow, TierSpec("b", "deadline", deadline_s=60), share, 1500) == math.inf
