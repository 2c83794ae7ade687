"""The serving stack in the loop: a vLLM emulator and a load generator of the project's own.

* :mod:`llmfleet.box.batching` -- the replica (pure): continuous batching at an LLMModel
  profile's rates, the same model as the twin's engine (:mod:`llmfleet.sim.engine`).
* :mod:`llmfleet.box.metrics` -- vLLM's Prometheus series, exact names and labels.
* :mod:`llmfleet.box.emulator` -- one aiohttp app per replica: OpenAI ``/v1/completions``
  and ``/v1/chat/completions`` (streaming and not), ``/metrics``, ``/health``.
* :mod:`llmfleet.box.loadgen` -- replays a slice of a trace against a base URL with the
  tenant, tier and origin headers, and counts every outcome.
"""
