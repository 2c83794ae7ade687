"""The gateway's demand metrics, as Envoy AI Gateway exports them (its ``internal/metrics``:
the OpenTelemetry GenAI semantic conventions, exported to Prometheus with dots as
underscores), so the operator's default query profile ``envoy-ai-gateway`` reads them as
they are:

- ``gen_ai_client_token_usage`` (histogram, tokens; ``gen_ai_token_type`` = ``input`` or
  ``output``), counted from the upstream's ``usage`` (``prompt_tokens``,
  ``completion_tokens``; in a stream, the chunk that carries it: the client asks with
  ``stream_options.include_usage``). No usage in the answer: no token series (the gateway
  does not count tokens itself, as Envoy AI Gateway does not);
- ``gen_ai_server_request_duration_seconds`` (histogram, from the request's arrival to the
  end of the answer; ``error_type="_OTHER"`` on a failure: an error status, an upstream that
  cannot be reached, a stream cut off);
- ``gen_ai_server_time_to_first_token_seconds`` (streams only: to the first chunk with
  content) and ``gen_ai_server_time_per_output_token_seconds`` (streams with more than one
  output token: ``(duration - ttft) / (output_tokens - 1)``).

Labels: ``gen_ai_operation_name`` (``chat`` for ``/v1/chat/completions``, ``completion``
for ``/v1/completions``), ``gen_ai_provider_name`` (``openai``), ``gen_ai_original_model``
(the request body's ``model`` as it came), ``gen_ai_request_model`` (the model sent upstream:
after the router's choice), ``gen_ai_response_model`` (the answer's ``model``; ``unknown``
when it has none), plus one label per request header of the mapping, written as Envoy AI
Gateway's ``controller.metricsRequestHeaderAttributes``: ``x-tenant-id:tenant.id,x-tier:tier``
gives ``tenant_id`` and ``tier`` (an attribute's dots become underscores; a request without
the header has no such label). The buckets are Envoy AI Gateway's.

:class:`StreamObserver` (pure: bytes and times in, an :class:`Observation` out) reads an
answer as it passes; :class:`GenAIMetrics` (one registry per instance, no module state)
records an observation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest

TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

OPERATIONS: Mapping[str, str] = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
PROVIDER = "openai"
UNKNOWN = "unknown"
ERROR_FALLBACK = "_OTHER"
BASE_LABELS = (
    "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_original_model",
    "gen_ai_request_model", "gen_ai_response_model",
)  # fmt: skip
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class HeaderMappingError(ValueError):
    """A ``header:attribute`` mapping that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class HeaderAttribute:
    """A request header recorded as a metric label (``x-tenant-id:tenant.id`` ->
    header ``x-tenant-id``, label ``tenant_id``)."""

    header: str
    label: str


def parse_header_attributes(text: str) -> tuple[HeaderAttribute, ...]:
    """``x-tenant-id:tenant.id,x-tier:tier`` (Envoy AI Gateway's
    ``metricsRequestHeaderAttributes``) -> the mapping; raises :class:`HeaderMappingError`."""
    out: list[HeaderAttribute] = []
    for i, entry in enumerate(e.strip() for e in text.split(",")):
        if not entry:
            continue
        header, sep, attribute = (s.strip() for s in entry.partition(":"))
        if not sep or not header or not attribute:
            raise HeaderMappingError(f"entry {i} ({entry!r}): expected header:attribute")
        label = attribute.replace(".", "_")
        if not _LABEL.match(label) or label in BASE_LABELS or label in (
            "gen_ai_token_type", "error_type", "le",
        ):  # fmt: skip
            raise HeaderMappingError(
                f"entry {i} ({entry!r}): {label!r} is not a label name this gateway can add"
            )
        if any(a.label == label or a.header == header.lower() for a in out):
            raise HeaderMappingError(f"entry {i} ({entry!r}): header or label given twice")
        out.append(HeaderAttribute(header.lower(), label))
    return tuple(out)


@dataclass(frozen=True)
class Observation:
    """What the gateway saw of one answer (times in seconds from the request's arrival)."""

    input_tokens: int | None
    output_tokens: int | None
    response_model: str | None
    duration: float
    ttft: float | None
    """Streams only: the first chunk with content."""
    success: bool


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class StreamObserver:
    """Reads one answer's body as it passes: a JSON document, or server-sent events
    (``data: {...}`` lines, ``data: [DONE]``). Keeps the last ``usage`` and ``model`` seen
    and, for a stream, when the first chunk with content came."""

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self._buf = bytearray()
        self._whole = bytearray()
        self.usage: Mapping[str, Any] | None = None
        self.model: str | None = None
        self.ttft: float | None = None

    def feed(self, chunk: bytes, elapsed: float) -> None:
        """Bytes of the body, ``elapsed`` seconds after the request arrived."""
        if not self.streaming:
            self._whole += chunk
            return
        self._buf += chunk
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return
            line = bytes(self._buf[:nl]).strip()
            del self._buf[: nl + 1]
            if line.startswith(b"data:"):
                self._event(line[5:].strip(), elapsed)

    def _event(self, data: bytes, elapsed: float) -> None:
        if not data or data == b"[DONE]":
            return
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        if not isinstance(doc, dict):
            return
        self._take(doc)
        if self.ttft is None and _has_content(doc):
            self.ttft = elapsed

    def _take(self, doc: Mapping[str, Any]) -> None:
        if isinstance(doc.get("model"), str) and doc["model"]:
            self.model = doc["model"]
        if isinstance(doc.get("usage"), dict):
            self.usage = doc["usage"]

    def finish(self, duration: float, success: bool) -> Observation:
        """The observation once the answer ended (or broke off: ``success`` False)."""
        if not self.streaming and self._whole:
            try:
                doc = json.loads(bytes(self._whole))
            except (json.JSONDecodeError, UnicodeDecodeError):
                doc = None
            if isinstance(doc, dict):
                self._take(doc)
        elif self._buf.strip().startswith(b"data:"):  # a last event without its newline
            self._event(bytes(self._buf).strip()[5:].strip(), duration)
            self._buf.clear()
        usage = self.usage or {}
        return Observation(
            input_tokens=_int(usage.get("prompt_tokens")),
            output_tokens=_int(usage.get("completion_tokens")),
            response_model=self.model,
            duration=duration,
            ttft=self.ttft if self.streaming else None,
            success=success,
        )


def _has_content(doc: Mapping[str, Any]) -> bool:
    choices = doc.get("choices")
    if not isinstance(choices, list):
        return False
    for c in choices:
        if not isinstance(c, dict):
            continue
        delta = c.get("delta")
        if isinstance(delta, dict) and delta.get("content"):
            return True
        if c.get("text"):
            return True
    return False


@dataclass(frozen=True)
class RequestLabels:
    """The labels of one request (see the module docstring)."""

    operation: str
    original_model: str
    request_model: str
    headers: tuple[str, ...]
    """The header attributes' values, in the mapping's order ("" = no such header)."""


class GenAIMetrics:
    """The gateway's gen_ai histograms in a registry of their own."""

    def __init__(self, header_attributes: Sequence[HeaderAttribute] = ()) -> None:
        self.header_attributes = tuple(header_attributes)
        self.registry = CollectorRegistry(auto_describe=True)
        extra = tuple(a.label for a in self.header_attributes)
        r = self.registry
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "Number of tokens processed.",
            (*BASE_LABELS, *extra, "gen_ai_token_type"), buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Generative AI server request duration such as time-to-last byte or last output "
            "token.",
            (*BASE_LABELS, *extra, "error_type"), buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to receive first token in streaming responses.",
            (*BASE_LABELS, *extra), buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token generated after the first token for successful responses.",
            (*BASE_LABELS, *extra), buckets=TPOT_BUCKETS, registry=r,
        )  # fmt: skip

    def labels_of(self, path: str, original_model: str | None, request_model: str | None,
                  headers: Mapping[str, str]) -> RequestLabels:  # fmt: skip
        """The labels of a request to ``path`` (``headers``: case-insensitive mapping)."""
        return RequestLabels(
            operation=OPERATIONS.get(path, path),
            original_model=original_model or UNKNOWN,
            request_model=request_model or UNKNOWN,
            headers=tuple(headers.get(a.header, "") for a in self.header_attributes),
        )

    def record(self, labels: RequestLabels, seen: Observation) -> None:
        """One finished request."""
        base = (
            labels.operation, PROVIDER, labels.original_model, labels.request_model,
            seen.response_model or UNKNOWN, *labels.headers,
        )  # fmt: skip
        self.request_duration.labels(*base, "" if seen.success else ERROR_FALLBACK).observe(
            seen.duration
        )
        if seen.input_tokens is not None:
            self.token_usage.labels(*base, "input").observe(seen.input_tokens)
        if seen.output_tokens is not None:
            self.token_usage.labels(*base, "output").observe(seen.output_tokens)
        if seen.ttft is not None:
            self.ttft.labels(*base).observe(seen.ttft)
            if seen.success and seen.output_tokens is not None and seen.output_tokens > 1:
                self.tpot.labels(*base).observe(
                    max(0.0, seen.duration - seen.ttft) / (seen.output_tokens - 1)
                )

    def exposition(self) -> bytes:
        """The Prometheus text format of the registry."""
        return generate_latest(self.registry)
