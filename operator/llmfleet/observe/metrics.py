"""Names of the metrics the dashboards and rules read, in one place.

vLLM exports the ``vllm:*`` series with the labels ``model_name`` and ``engine`` only; the
PodMonitor adds ``region`` (and the LLMModel's ``model_name``). None carries ``tenant`` or
``tier``: those are the gateway's (README, "Demand from the gateway"), so the panels and SLO
rules that group vLLM's histograms by ``tier`` see data only where a tier label is added at
scrape time (one tier per model deployment); reading them from the gateway's histograms is
open work. The names here are vLLM's current ones (not the deprecated
``vllm:gpu_cache_usage_perc`` and ``vllm:time_per_output_token_seconds``). The controller
exports the ``llmfleet_*`` series. A dashboard or rule that names a metric
not listed here fails the unit tests, so the list is the contract with the exporters.
"""

from __future__ import annotations

# vLLM (per serving replica; summed by the queries)
VLLM_PROMPT_TOKENS = "vllm:prompt_tokens_total"
VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_TTFT = "vllm:time_to_first_token_seconds"
VLLM_E2E = "vllm:e2e_request_latency_seconds"

# llmfleet controller: metric name -> labels (gauges unless the name ends in _total)
LLMFLEET: dict[str, tuple[str, ...]] = {
    "llmfleet_desired_replicas": ("model_name", "region", "pool"),
    "llmfleet_current_replicas": ("model_name", "region", "pool"),
    "llmfleet_desired_nodes": ("region", "pool", "capacity_type"),
    "llmfleet_current_gpus": ("region", "pool", "capacity_type"),
    "llmfleet_plan_cost_dollars_per_hour": ("policy",),
    "llmfleet_fleet_cost_dollars_per_hour": ("region", "pool", "capacity_type"),
    "llmfleet_plan_timestamp_seconds": ("policy",),
    "llmfleet_solver_duration_seconds": ("policy",),
    "llmfleet_solver_gap_ratio": ("policy",),
    "llmfleet_solver_status": ("policy", "status"),
    "llmfleet_unmet_demand_tokens_per_second": ("model_name", "region"),
    "llmfleet_capacity_tokens_per_second": ("model_name", "region"),
    "llmfleet_actuation_errors_total": ("region", "target"),
    "llmfleet_corrected_replicas": ("policy",),
    "llmfleet_correction_replicas_added_total": ("model_name", "region", "pool", "rule"),
    "llmfleet_demand_data_age_seconds": (),
    "llmfleet_region_reachable": ("region",),
    "llmfleet_routing_weight": ("model_name", "origin_region", "region"),
    "llmfleet_spot_interruptions_total": ("region", "pool"),
    "llmfleet_tier_target_seconds": ("tier", "slo"),
    "llmfleet_tenant_limit_tokens_per_second": ("tenant", "tier", "model_name"),
    "llmfleet_tenant_usage_tokens_per_second": ("tenant", "tier", "model_name"),
    "llmfleet_tenant_weight": ("tenant", "tier"),
    "llmfleet_tenant_throttled_requests_total": ("tenant", "tier", "model_name"),
}

SOLVER_STATUSES = ("optimal", "feasible", "infeasible", "error", "timeout_no_solution")
"""``llmfleet_solver_status{policy, status}`` is a state set: one series per status, 1 for the
last solve's outcome and 0 for the others (so "no failure" is data, not absence)."""
SOLVER_BAD_STATUSES = ("infeasible", "error", "timeout_no_solution")
"""The statuses that mean no usable plan."""
