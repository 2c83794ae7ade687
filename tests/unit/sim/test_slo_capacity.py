"""The SLO-true load of plan.capacity (4) against the twin: at the load the
M/G/1 prefill model allows, one replica meets the tier's TTFT at its percentile, and 1.6
times that load misses it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from conftest import Fixed, hand_workload, tiny_scenario
from llmfleet.plan.capacity import PROMPT_SCV, mix_throughput, replica_throughput, slo_load
from llmfleet.plan.instance import profile_spec, tier_spec
from llmfleet.sim.engine import Engine
from llmfleet.sim.metrics import DONE

PREFILL, TTFT, MEAN_PROMPT, OUT = 4000.0, 3.0, 2000, 10


def _p95_at(load_factor: float) -> float:
    sc = tiny_scenario(prefill=PREFILL, decode=4000.0, max_seqs=64, ttft=TTFT, target=1.0)
    snap = sc.snapshot()
    prof = profile_spec(snap.models[0].spec.profiles[0])
    tier = tier_spec(next(t for t in snap.tiers if t.metadata.name == "fast"))
    share = MEAN_PROMPT / (MEAN_PROMPT + OUT)
    cap = slo_load(prof, tier, share, MEAN_PROMPT)
    # long prompts on a slow prefill: the M/G/1 bound is below the utilisation's
    assert 0 < cap < replica_throughput(prof, tier, share, MEAN_PROMPT + OUT)
    assert cap < mix_throughput(prof, share)
    rate = load_factor * cap / (MEAN_PROMPT + OUT)
    rng = np.random.default_rng(7)
    n = int(rate * 20000)
    arr = np.cumsum(rng.exponential(1 / rate, n))
    sigma2 = math.log(1 + PROMPT_SCV)  # lognormal prompts with the model's SCV
    prompts = rng.lognormal(math.log(MEAN_PROMPT) - sigma2 / 2, math.sqrt(sigma2), n)
    prompts = np.clip(prompts.round(), 1, None).astype(int)
    wl = hand_workload(arr.tolist(), prompts.tolist(), [OUT] * n, duration=float(arr[-1]) + 60)
    rec = Engine(snap, wl, Fixed(1), sc.engine, keep_requests=True).run()
    assert (rec.status == DONE).all()
    return float(np.percentile(rec.ttft, 95))


def test_at_the_slo_true_load_the_replica_meets_the_ttft_percentile():
    assert _p95_at(1.0) <= TTFT


def test_the_slo_true_load_is_not_far_below_what_the_replica_can_hold():
    # the model is an approximation; it must not leave most of the replica idle
    assert _p95_at(1.6) > TTFT


def test_prompts_too_long_for_the_target_even_idle_have_no_slo_load():
    sc = tiny_scenario(prefill=PREFILL, decode=4000.0, max_seqs=64, ttft=TTFT, target=1.0)
    snap = sc.snapshot()
    prof = profile_spec(snap.models[0].spec.profiles[0])
    tier = tier_spec(next(t for t in snap.tiers if t.metadata.name == "fast"))
    prompt = 0.9 * TTFT * PREFILL  # mean prefill 2.7 s: its p95 is over the 3 s target
    share = prompt / (prompt + OUT)
    assert slo_load(prof, tier, share, prompt) == 0.0  # an idle replica misses it too
    fast = dataclasses.replace(prof, prefill_tokens_per_s=4 * PREFILL)
    assert slo_load(fast, tier, share, prompt) > 0  # a faster prefill meets it
