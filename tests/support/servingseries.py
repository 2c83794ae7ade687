"""The series a serving stack exports, for tests that backfill a Prometheus: demand as Envoy
AI Gateway exports it (the default ``envoy-ai-gateway`` profile), replica state as vLLM
does. Labels are those the operator's queries see through a regional Prometheus: the
gateway's ``gen_ai_request_model`` (the served name), the header-derived ``tenant_id`` and
``tier``, and ``region`` (the external label of the region's Prometheus)."""

from __future__ import annotations

from support.promtools import Series

SERVED = {
    "llama-3-1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3-3-70b": "meta-llama/Llama-3.3-70B-Instruct",
    "llama-3-1-405b": "meta-llama/Llama-3.1-405B-Instruct-FP8",
}
"""The sample LLMModels' served names."""


def gateway_demand(
    model: str, origin: str, tier: str, tenant: str, prompt_tps: float, t0: float,
    *, output_ratio: float = 0.25, prompt_tokens_per_request: float = 1500.0,
) -> list[Series]:  # fmt: skip
    """Cumulative counters of one flow at the gateway from ``t0``: input and output token
    sums (``gen_ai_client_token_usage`` histogram) and the request count
    (``gen_ai_server_request_duration_seconds``)."""
    lab = {
        "gen_ai_request_model": SERVED.get(model, model),
        "gen_ai_operation_name": "chat",
        "tenant_id": tenant,
        "tier": tier,
        "region": origin,
    }
    out = output_ratio * prompt_tps
    rps = prompt_tps / prompt_tokens_per_request
    return [
        Series("gen_ai_client_token_usage_sum", {**lab, "gen_ai_token_type": "input"},
               lambda t: prompt_tps * (t - t0)),
        Series("gen_ai_client_token_usage_sum", {**lab, "gen_ai_token_type": "output"},
               lambda t: out * (t - t0)),
        Series("gen_ai_server_request_duration_seconds_count", lab, lambda t: rps * (t - t0)),
    ]  # fmt: skip


def vllm_replica(model: str, region: str, running: float = 3.0) -> list[Series]:
    """vLLM's gauges of one model in one serving region (the PodMonitor's labels)."""
    lab = {"model_name": model, "region": region, "engine": "0"}
    return [
        Series("vllm:num_requests_running", lab, lambda t: running),
        Series("vllm:num_requests_waiting", lab, lambda t: 0.0),
        Series("vllm:kv_cache_usage_perc", lab, lambda t: 0.3),
    ]
