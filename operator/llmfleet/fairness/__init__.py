"""Fair sharing of a multi-tenant fleet (pure core, no I/O).

* :mod:`llmfleet.fairness.scheduling` — the per-replica admission/scheduling hook the
  simulator's replicas call, and FCFS, the default.
"""
