"""Fair sharing of a multi-tenant fleet (pure core, no I/O).

* :mod:`llmfleet.fairness.scheduling` — the per-replica admission/scheduling hook the
  simulator's replicas call, and FCFS, the default.
* :mod:`llmfleet.fairness.limits` — per-tenant limits every cycle: weighted max-min fair,
  work-conserving shares of the plan's capacity that bite only under overload
  (:func:`~llmfleet.fairness.limits.compute_limits`), the plan's ``spec.throttles`` and the
  ``llmfleet_tenant_{limit,usage}_tokens_per_second`` samples.
* :mod:`llmfleet.fairness.schedulers` — RPM limits, VTC (OSDI 2024) and FairServe's weighted
  service counter in token shares (plus the published per-call form, for comparison), by
  name via :func:`~llmfleet.fairness.schedulers.make_scheduler`.
"""
