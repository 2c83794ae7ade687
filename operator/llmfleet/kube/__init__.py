"""The only I/O layer: Kubernetes clients and appliers, the Prometheus reader."""
