"""The demand profiles (gateway, llm-d EPP, vLLM alone), their labels, and vLLM's replica
state: the pure part of the reader, and the reader against a recording fake."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmfleet.api.policy import (
    LABEL_SOURCES,
    PROFILE_TEMPLATES,
    PrometheusQueries,
    PrometheusSource,
    promql_structure_problem,
)
from llmfleet.fairness.limits import Usage
from llmfleet.forecast.types import FlowKey
from llmfleet.kube.prometheus import (
    DemandReader,
    MissingLabel,
    ReplicaState,
    histories_from_results,
    newest_per_region,
    peak_query,
    replica_states_from_results,
    usage_from_results,
)

START = 1_700_000_000 - 1_700_000_000 % 3600
STEP = 3600
SERVED = {"meta-llama/Llama-3.1-8B-Instruct": "llama-3-1-8b"}


def _range(metric: dict[str, str], value: float) -> dict[str, Any]:
    return {"metric": metric, "values": [[START + STEP, str(value)]]}


def _instant(metric: dict[str, str], value: float) -> dict[str, Any]:
    return {"metric": metric, "value": [START, str(value)]}


def test_every_profile_default_is_one_well_formed_expression() -> None:
    for profile, templates in PROFILE_TEMPLATES.items():
        for name, template in templates.items():
            if template is not None:
                assert promql_structure_problem(template) is None, (profile, name)
                assert ";" not in template and len(template) <= 4096
        assert set(LABEL_SOURCES[profile]) == {"model_name", "region", "tier", "tenant"}


def test_the_default_reads_the_gateway_and_vllm_only_for_replica_state() -> None:
    q = PrometheusQueries()
    assert q.profile == "envoy-ai-gateway"
    assert 'gen_ai_client_token_usage_sum{gen_ai_token_type="input"}' in q.template(
        "prompt_tokens"
    )
    assert 'gen_ai_token_type="output"' in q.template("generation_tokens")
    assert "gen_ai_server_request_duration_seconds_count" in q.template("requests")
    usage = q.usage_template()
    assert usage is not None and '"tenant", "$1", "tenant_id"' in usage
    for name in ("prompt_tokens", "generation_tokens", "requests"):
        assert "vllm:" not in q.template(name)  # type: ignore[arg-type]
    # replica state: vLLM's current names, never the deprecated ones
    state = " ".join([q.running, q.waiting, q.kv_cache_usage, q.ttft_p95, q.completions])
    assert "vllm:kv_cache_usage_perc" in state and "vllm:request_success_total" in state
    assert "gpu_cache_usage_perc" not in state and "time_per_output_token" not in state
    # a template written out wins over the profile's
    own = PrometheusQueries(profile="llm-d-epp", requests="sum by (model_name) (x)")
    assert own.template("requests") == "sum by (model_name) (x)"
    assert "llm_d_epp_request_input_tokens_sum" in own.template("prompt_tokens")


def test_gateway_series_name_the_served_model_and_map_to_the_llmmodel() -> None:
    metric = {"model_name": "meta-llama/Llama-3.1-8B-Instruct", "region": "eu", "tier": "fast"}
    (h,) = histories_from_results(
        {"prompt_tokens": [_range(metric, 100.0)]}, START, STEP, 1, PrometheusQueries(), SERVED
    )
    assert h.key == FlowKey(model="llama-3-1-8b", origin="eu", tier="fast")
    assert h.rates.prompt_tokens_per_s == (100.0,)


@pytest.mark.parametrize(
    ("profile", "missing", "provider"),
    [
        ("envoy-ai-gateway", "tier", "x-tier:tier"),
        ("envoy-ai-gateway", "region", "external_labels"),
        ("llm-d-epp", "tier", "metric_relabel_configs"),
        ("vllm", "model_name", "podTargetLabels"),
    ],
)
def test_a_missing_label_names_template_label_and_config(
    profile: str, missing: str, provider: str
) -> None:
    metric = {"model_name": "m", "region": "eu", "tier": "fast"}
    del metric[missing]
    q = PrometheusQueries.model_validate({"profile": profile})
    with pytest.raises(MissingLabel) as err:
        histories_from_results({"requests": [_range(metric, 1.0)]}, START, STEP, 1, q)
    assert (err.value.template, err.value.label) == ("requests", missing)
    assert provider in err.value.provider
    assert err.value.series == metric


def test_vllm_alone_plans_origin_as_serving_region_one_tier_no_usage() -> None:
    q = PrometheusQueries.model_validate({"profile": "vllm", "defaultTier": "interactive"})
    assert "tier" not in q.template("prompt_tokens") and q.usage_template() is None
    metric = {"model_name": "llama-3-1-8b", "region": "us-east"}  # vLLM: serving region
    (h,) = histories_from_results(
        {"prompt_tokens": [_range(metric, 5.0)], "requests": [_range(metric, 0.1)]},
        START, STEP, 1, q,
    )  # fmt: skip
    assert h.key == FlowKey(model="llama-3-1-8b", origin="us-east", tier="interactive")
    # without defaultTier the same series is an error that says what to set
    with pytest.raises(MissingLabel) as err:
        histories_from_results(
            {"prompt_tokens": [_range(metric, 5.0)]}, START, STEP, 1,
            PrometheusQueries(profile="vllm"),
        )  # fmt: skip
    assert err.value.label == "tier" and "defaultTier" in err.value.provider


def test_usage_lacking_tenant_names_the_header_mapping() -> None:
    good = {"tenant": "acme", "model_name": "meta-llama/Llama-3.1-8B-Instruct", "region": "eu"}
    assert usage_from_results([_instant(good, 7.0)], None, SERVED) == (
        Usage("acme", "llama-3-1-8b", "eu", 7.0),
    )
    with pytest.raises(MissingLabel) as err:
        usage_from_results([_instant({"model_name": "m", "region": "eu"}, 1.0)])
    assert (err.value.template, err.value.label) == ("tenantUsage", "tenant")
    assert "x-tenant-id:tenant.id" in err.value.provider
    q = PrometheusQueries(profile="llm-d-epp")
    with pytest.raises(MissingLabel, match="fairness_id"):
        usage_from_results([_instant({"model_name": "m", "region": "eu"}, 1.0)], q)


def test_replica_state_per_model_and_serving_region() -> None:
    a = {"model_name": "m", "region": "eu"}
    b = {"model_name": "m", "region": "us"}
    out = replica_states_from_results(
        {
            "running": [_instant(a, 3.0), _instant(a, 2.0), _instant(b, 1.0)],
            "waiting": [_instant(a, 4.0)],
            "kv_cache_usage": [_instant(a, 0.5), _instant(b, float("nan"))],
            "ttft_p95": [_instant(b, 0.25)],
            "completions": [],
        }
    )
    assert [(s.model, s.region) for s in out] == [("m", "eu"), ("m", "us")]
    eu, us = out
    assert (eu.running, eu.waiting, eu.kv_cache_usage) == (5.0, 4.0, 0.5)
    assert us.running == 1.0 and us.ttft_p95 == 0.25
    assert isinstance(us, ReplicaState) and us.kv_cache_usage != us.kv_cache_usage  # NaN
    with pytest.raises(MissingLabel) as err:
        replica_states_from_results({"kv_cache_usage": [_instant({"model_name": "m"}, 1.0)]})
    assert (err.value.template, err.value.label) == ("kvCacheUsage", "region")


def test_data_age_is_the_most_lagging_serving_region() -> None:
    newest = newest_per_region(
        [_instant({"region": "eu"}, 100.0), _instant({"region": "us"}, 40.0)]
    )
    assert newest == {"eu": 100.0, "us": 40.0}
    with pytest.raises(MissingLabel) as err:
        newest_per_region([_instant({}, 1.0)])
    assert err.value.template == "newestSample"


def test_reader_queries_the_profile_templates_and_vllm_for_state() -> None:
    reader = DemandReader(
        PrometheusSource(url="http://127.0.0.1:9", timeout_seconds=1),
        resolve=lambda host, port: ["127.0.0.1"],
        served_names=SERVED,
    )
    asked: list[str] = []

    def instant(query: str, **_: Any) -> list[Any]:
        asked.append(query)
        if "timestamp" in query:
            return [_instant({"region": "eu"}, time.time() - 30), _instant({"region": "us"}, 1.0)]
        return [_instant({"model_name": "meta-llama/Llama-3.1-8B-Instruct", "region": "eu"}, 2)]

    def ranged(query: str, **_: Any) -> list[Any]:
        asked.append(query)
        return []

    reader._prom.custom_query = instant  # type: ignore[method-assign]
    reader._prom.custom_query_range = ranged  # type: ignore[method-assign]
    q = PrometheusQueries()
    read = reader.read(q, end=time.time(), history_seconds=7200, step_seconds=STEP)
    assert all("gen_ai_" in a for a in asked[:3]) and "[3600s]" in asked[0]
    assert "vllm:num_requests_running" in asked[3]
    assert read.newest_sample == 1.0  # the lagging region decides
    states = reader.read_replica_state(q, end=time.time())
    assert {s.model for s in states} == {"llama-3-1-8b"}
    assert any("[300s]" in a for a in asked[4:])  # replicaWindowSeconds
    n = len(asked)
    assert reader.read_usage(PrometheusQueries(profile="vllm"), end=1.0, step_seconds=STEP) == ()
    assert len(asked) == n  # profile vllm asks nothing for usage
    reader.close()


def test_peak_query_is_the_template_at_the_burst_window_maximised_over_the_step() -> None:
    q = PrometheusQueries()
    peak = peak_query(q.template("prompt_tokens"), 300, STEP)
    assert peak.startswith("max_over_time((") and peak.endswith(f")[{STEP}s:60s])")
    assert "[300s]" in peak and "$window" not in peak
    assert promql_structure_problem(peak) is None


def test_reader_reads_each_steps_peak_when_asked() -> None:
    reader = DemandReader(
        PrometheusSource(url="http://127.0.0.1:9", timeout_seconds=1),
        resolve=lambda host, port: ["127.0.0.1"],
        served_names=SERVED,
    )
    asked: list[str] = []
    flow = {"model_name": "meta-llama/Llama-3.1-8B-Instruct", "region": "eu",
            "tier": "interactive-fast"}

    def ranged(query: str, **_: Any) -> list[Any]:
        asked.append(query)
        burst = query.startswith("max_over_time")
        return [{"metric": flow, "values": [[START + STEP, "50" if burst else "10"]]}]

    reader._prom.custom_query = lambda query, **_: []  # type: ignore[method-assign]
    reader._prom.custom_query_range = ranged  # type: ignore[method-assign]
    q = PrometheusQueries()
    read = reader.read(q, end=START + STEP, history_seconds=STEP, step_seconds=STEP,
                       peak_seconds=300)
    (h,) = read.histories
    assert h.rates.prompt_tokens_per_s == (10.0,)
    assert h.peaks is not None and h.peaks.prompt_tokens_per_s == (50.0,)
    assert sum(a.startswith("max_over_time") for a in asked) == 3
    plain = reader.read(q, end=START + STEP, history_seconds=STEP, step_seconds=STEP)
    assert plain.histories[0].peaks is None  # peak_seconds 0 asks for no peaks
    reader.close()
