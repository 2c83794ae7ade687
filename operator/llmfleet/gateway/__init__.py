"""The router service (I/O shell): an OpenAI-compatible HTTP proxy that picks each
request's model with the pure core (:mod:`llmfleet.routing.models.serving`), sets the header
the gateway routes on and forwards to the upstream. See :mod:`llmfleet.gateway.proxy`."""
