"""Assemble and run the operator: one explicit registry, settings in one place."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from llmfleet.api.base import GROUP
from llmfleet.controller import cleanup, planning, validation
from llmfleet.controller.metrics import FleetMetrics


class EndlessBackoffs:
    """kopf's API retry delays, without end: 1, 2, 4, ... up to ``cap`` seconds, then every
    ``cap`` seconds for as long as the apiserver is down. kopf re-iterates this for every
    request; a finite list (kopf's default gives up after ~54 s) lets an outage of a few
    minutes escape kopf's patch of a timer's status and end the timer task for good."""

    def __init__(self, cap: float = 30.0) -> None:
        self.cap = cap

    def __iter__(self) -> Iterator[float]:
        ramp = itertools.takewhile(lambda d: d < self.cap, (2.0**i for i in itertools.count()))
        return itertools.chain(ramp, itertools.repeat(self.cap))


def retry_conflicting_patches(backoffs: Iterable[float] | None = None) -> bool:
    """Make kopf send a patch again when the apiserver answers it 409 Conflict.

    kopf (1.37-1.45) retries 5xx, 403, 429 and lost connections, never 409: a 409 on a
    timer's status patch escapes the timer, which kopf marks stopped for good -- the planning
    loop ends without a log line and only ``/healthz`` notices, 150 s later (found by
    ``llmfleet bench soak`` with 409 on 30% of the writes). kopf's patches of an object are
    JSON merge patches without a resourceVersion (its JSON patches test the resourceVersion
    and fail with 422, which kopf handles), so sending one again is safe; the delays are
    ``backoffs`` (:class:`EndlessBackoffs` by default). False when this kopf has no
    ``patch_obj`` to wrap (nothing changed)."""
    from kopf._cogs.clients import errors, patching

    original = getattr(patching, "patch_obj", None)
    if original is None or getattr(original, "_llmfleet_retries_conflicts", False):
        return original is not None

    async def patch_obj(*args: Any, **kwargs: Any) -> Any:
        delays = iter(backoffs if backoffs is not None else EndlessBackoffs())
        while True:
            try:
                return await original(*args, **kwargs)
            except errors.APIConflictError as err:
                delay = next(delays, None)
                if delay is None:
                    raise
                logger = kwargs.get("logger") or logging.getLogger(__name__)
                logger.warning("patch answered 409 Conflict, sent again in %g s: %s", delay, err)
                await asyncio.sleep(delay)

    patch_obj._llmfleet_retries_conflicts = True  # type: ignore[attr-defined]
    patching.patch_obj = patch_obj
    return True


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs."""

    namespaces: Sequence[str] = field(default_factory=tuple)
    """Namespaces to watch; empty means cluster-wide."""
    validation: validation.ValidationSettings = field(default_factory=validation.ValidationSettings)
    liveness_endpoint: str | None = None
    """e.g. ``http://0.0.0.0:8080/healthz`` (kopf's probe server)."""
    peering: str | None = None
    """kopf peering object name for HA (one active replica); None runs standalone."""
    peering_priority: int | None = None
    """This replica's peering priority (the highest live one is active); None picks a random
    one at start, so the replicas of one Deployment differ: kopf pauses every replica of an
    equal priority."""
    planning: planning.PlanningSettings = field(default_factory=planning.PlanningSettings)
    metrics_port: int | None = None
    """Serve ``/metrics`` (prometheus_client) on this port; None serves none."""
    metrics_address: str = "127.0.0.1"
    """Address ``/metrics`` binds to (loopback by default; ``0.0.0.0`` to be scraped from
    outside the pod)."""
    log_level: str = "INFO"
    """Root log level: DEBUG, INFO, WARNING or ERROR."""
    log_format: str = "json"
    """``json`` (one object per line, with the object each line is about) or ``plain``."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN}


def configure_logging(level: str, fmt: str) -> None:
    """Structured logging for the whole process (kopf's and llmfleet's loggers) at ``level``."""
    if level.upper() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
    kopf.configure(log_format=LOG_FORMATS[fmt], log_refkey="object")
    logging.getLogger().setLevel(level.upper())


def build_registry(
    cfg: OperatorConfig, metrics: FleetMetrics | None = None
) -> kopf.OperatorRegistry:
    """A fresh registry with every handler llmfleet installs."""
    registry = kopf.OperatorRegistry()
    loop = planning.PlanningLoop(cfg.planning, metrics or FleetMetrics())

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and diff-base in annotations of our own prefix: statuses stay ours.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        # Only warnings and errors become Events by themselves; the rest are posted on purpose.
        settings.posting.level = logging.WARNING
        # Never block forever on a dead apiserver.
        settings.watching.connect_timeout = 30
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 30
        # Retry API errors for as long as they last (every request still has its timeout).
        settings.networking.error_backoffs = EndlessBackoffs()
        settings.execution.max_workers = 4

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own readers: in-cluster service account first, else $KUBECONFIG.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    def close(**_: Any) -> None:
        loop.close()

    validation.register(registry, cfg.validation)
    planning.register(registry, loop)
    cleanup.register(registry, loop)
    return registry


def run(cfg: OperatorConfig, stop_flag: asyncio.Event | None = None) -> None:
    """Run until interrupted (or ``stop_flag`` is set)."""
    configure_logging(cfg.log_level, cfg.log_format)
    if not retry_conflicting_patches():
        logging.getLogger(__name__).warning(
            "this kopf has no patch_obj: a 409 Conflict on a timer's status patch ends the timer"
        )
    metrics = FleetMetrics()
    server = (
        metrics.serve(cfg.metrics_port, cfg.metrics_address)
        if cfg.metrics_port is not None
        else None
    )
    registry = build_registry(cfg, metrics)
    try:
        _run(cfg, registry, stop_flag)
    finally:
        if server is not None:
            server.shutdown()


def _run(
    cfg: OperatorConfig, registry: kopf.OperatorRegistry, stop_flag: asyncio.Event | None
) -> None:
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=cfg.peering is None,
            peering_name=cfg.peering,
            priority=(
                cfg.peering_priority
                if cfg.peering_priority is not None
                else random.SystemRandom().randint(1, 2**31 - 1)
            ),
            namespaces=list(cfg.namespaces),
            clusterwide=not cfg.namespaces,
            liveness_endpoint=cfg.liveness_endpoint,
            stop_flag=stop_flag,
        )
    )
