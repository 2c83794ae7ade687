"""Assemble and run the operator: one explicit registry, settings in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from llmfleet.api.base import GROUP
from llmfleet.controller import validation


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


def build_registry(cfg: OperatorConfig) -> kopf.OperatorRegistry:
    """A fresh registry with every handler llmfleet installs."""
    registry = kopf.OperatorRegistry()

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
        settings.execution.max_workers = 4

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own readers: in-cluster service account first, else $KUBECONFIG.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    validation.register(registry, cfg.validation)
    return registry


def run(cfg: OperatorConfig, stop_flag: asyncio.Event | None = None) -> None:
    """Run until interrupted (or ``stop_flag`` is set)."""
    registry = build_registry(cfg)
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=cfg.peering is None,
            peering_name=cfg.peering,
            namespaces=list(cfg.namespaces),
            clusterwide=not cfg.namespaces,
            liveness_endpoint=cfg.liveness_endpoint,
            stop_flag=stop_flag,
        )
    )
