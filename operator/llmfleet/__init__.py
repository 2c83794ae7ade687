"""llmfleet: a Kubernetes operator for multi-region LLM serving fleets at the lowest GPU
cost that still meets every SLA and treats every tenant fairly."""

__version__ = "0.1.0"
