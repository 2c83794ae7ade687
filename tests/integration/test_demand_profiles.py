"""The demand profiles against a real Prometheus: the same flow written as Envoy AI Gateway,
llm-d's endpoint picker and vLLM export it is read back by each profile's default
templates; a gateway without the tier header mapping is a MissingLabel naming it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llmfleet.api.policy import PrometheusQueries, PrometheusSource
from llmfleet.forecast.types import FlowKey
from llmfleet.kube.prometheus import DemandReader, MissingLabel
from support.promtools import LocalPrometheus, Series
from support.servingseries import SERVED, gateway_demand, vllm_replica

STEP = 300
TPS = 1000.0  # prompt tokens/s of the flow


def _epp(t0: float) -> list[Series]:
    lab = {"model_name": SERVED["llama-3-1-8b"], "target_model_name": SERVED["llama-3-1-8b"],
           "fairness_id": "acme", "priority": "10", "tier": "interactive-fast",
           "region": "eu-west"}  # fmt: skip
    return [
        Series("llm_d_epp_request_input_tokens_sum", lab, lambda t: TPS * (t - t0)),
        Series("llm_d_epp_request_output_tokens_sum", lab, lambda t: TPS / 4 * (t - t0)),
        Series("llm_d_epp_request_total", lab, lambda t: TPS / 1500 * (t - t0)),
    ]


def _vllm(t0: float) -> list[Series]:
    lab = {"model_name": "llama-3-1-8b", "region": "ap-northeast", "engine": "0"}
    return [
        Series("vllm:prompt_tokens_total", lab, lambda t: TPS * (t - t0)),
        Series("vllm:generation_tokens_total", lab, lambda t: TPS / 4 * (t - t0)),
        Series("vllm:request_success_total", {**lab, "finished_reason": "length"},
               lambda t: TPS / 1500 * (t - t0)),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    prom = LocalPrometheus(tmp_path_factory.mktemp("prom-profiles"))
    end = time.time() - 15
    start = end - 2 * 3600
    series = gateway_demand("llama-3-1-8b", "us-east", "interactive-fast", "acme", TPS, start)
    # a second gateway whose controller maps no tier header
    series += [
        Series(s.name, {k: v for k, v in s.labels.items() if k != "tier"}, s.value)
        for s in gateway_demand("llama-3-3-70b", "us-west", "x", "acme", TPS, start)
    ]
    series += _epp(start) + _vllm(start) + vllm_replica("llama-3-1-8b", "us-east")
    prom.start(series, start, end, step=60)
    try:
        yield prom
    finally:
        prom.stop()


def _read(prom: LocalPrometheus, queries: PrometheusQueries) -> dict[FlowKey, float]:
    reader = DemandReader(
        PrometheusSource(url=prom.url, timeout_seconds=5),
        served_names={served: model for model, served in SERVED.items()},
    )
    try:
        read = reader.read(queries, end=time.time(), history_seconds=3600, step_seconds=STEP)
    finally:
        reader.close()
    return {h.key: h.rates.prompt_tokens_per_s[-2] for h in read.histories}


def test_each_profile_reads_its_layer(prometheus: LocalPrometheus) -> None:
    only_8b = 'gen_ai_request_model="meta-llama/Llama-3.1-8B-Instruct",'
    gateway = (
        PrometheusQueries()
        .template("prompt_tokens")
        .replace("gen_ai_client_token_usage_sum{", "gen_ai_client_token_usage_sum{" + only_8b)
    )
    q = PrometheusQueries.model_validate(
        {"promptTokens": gateway, "generationTokens": gateway, "requests": gateway}
    )
    got = _read(prometheus, q)
    assert list(got) == [FlowKey(model="llama-3-1-8b", origin="us-east", tier="interactive-fast")]
    assert next(iter(got.values())) == pytest.approx(TPS, rel=0.01)

    got = _read(prometheus, PrometheusQueries(profile="llm-d-epp"))
    assert got == {
        FlowKey(model="llama-3-1-8b", origin="eu-west", tier="interactive-fast"): pytest.approx(TPS)
    }

    got = _read(prometheus, PrometheusQueries(profile="vllm", default_tier="interactive-normal"))
    assert got == {
        FlowKey(
            model="llama-3-1-8b", origin="ap-northeast", tier="interactive-normal"
        ): pytest.approx(TPS)
    }


def test_a_gateway_without_the_tier_mapping_names_it(prometheus: LocalPrometheus) -> None:
    with pytest.raises(MissingLabel) as err:
        _read(prometheus, PrometheusQueries())
    assert err.value.label == "tier"
    assert err.value.template in ("requests", "promptTokens", "generationTokens")
    assert "metricsRequestHeaderAttributes" in err.value.provider
    assert err.value.series["model_name"] == SERVED["llama-3-3-70b"]


def test_replica_state_reads_vllm_per_serving_region(prometheus: LocalPrometheus) -> None:
    reader = DemandReader(PrometheusSource(url=prometheus.url, timeout_seconds=5))
    try:
        states = reader.read_replica_state(PrometheusQueries(), end=time.time())
    finally:
        reader.close()
    (us,) = [s for s in states if s.region == "us-east"]
    assert (us.model, us.running, us.waiting) == ("llama-3-1-8b", 3.0, 0.0)
    assert us.kv_cache_usage == pytest.approx(0.3)
