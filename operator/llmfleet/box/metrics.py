"""vLLM's Prometheus series, with vLLM's exact names, labels and buckets (vLLM v1,
``vllm/v1/metrics/loggers.py``: labels ``model_name`` (the served name) and ``engine``).
One registry per emulated replica: no module-level state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmfleet.box.batching import Finished

LABELS = ("model_name", "engine")
FINISHED_REASONS = ("stop", "length", "abort")
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


class VllmMetrics:
    """The series of one replica (``model_name`` = served name, ``engine`` = ``"0"``)."""

    def __init__(self, served_name: str, engine: str = "0") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, lab = self.registry, (served_name, engine)
        self.running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.",
            LABELS, registry=r,
        ).labels(*lab)  # fmt: skip
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            LABELS, registry=r,
        ).labels(*lab)  # fmt: skip
        self.kv_cache = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
            LABELS, registry=r,
        ).labels(*lab)  # fmt: skip
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", LABELS, registry=r
        ).labels(*lab)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", LABELS,
            registry=r,
        ).labels(*lab)  # fmt: skip
        success = Counter(
            "vllm:request_success", "Count of successfully processed requests.",
            (*LABELS, "finished_reason"), registry=r,
        )  # fmt: skip
        self.success = {reason: success.labels(*lab, reason) for reason in FINISHED_REASONS}
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            LABELS, buckets=TTFT_BUCKETS, registry=r,
        ).labels(*lab)  # fmt: skip
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            LABELS, buckets=ITL_BUCKETS, registry=r,
        ).labels(*lab)  # fmt: skip
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            LABELS, buckets=E2E_BUCKETS, registry=r,
        ).labels(*lab)  # fmt: skip

    def state(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_cache.set(kv_cache_usage)

    def finished(self, f: Finished) -> None:
        """One request done: its tokens, reason and latencies (as vLLM records them)."""
        self.prompt_tokens.inc(f.prompt_tokens)
        self.generation_tokens.inc(f.output_tokens)
        self.success[f.reason].inc()
        self.ttft.observe(max(0.0, f.first_token - f.arrival))
        self.e2e.observe(max(0.0, f.time - f.arrival))
        if f.output_tokens > 1:
            self.itl.observe(max(0.0, (f.time - f.first_token) / (f.output_tokens - 1)))

    def aborted(self) -> None:
        self.success["abort"].inc()

    def text(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
