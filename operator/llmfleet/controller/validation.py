"""Reference validation: mark every llmfleet object ``Valid`` True/False in its status.

Each kind is watched and kept in a kopf index (an in-memory view of every object, so no
handler lists the cluster). On create/update/resume, and on a timer so that a change to
*another* object (say, the SLATier a TenantQuota names appears) is picked up, the handler
parses the object with the pydantic types, runs the pure :func:`check_references` over
the indexed snapshot, and writes ``status.conditions[type=Valid]``. A status change is
announced with an Event (Warning when invalid, Normal when valid again). Nothing here
raises on bad input: a bad object is a status, not a crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from llmfleet.api.base import GROUP, VERSION, ConditionStatus
from llmfleet.api.conditions import VALID, Reason, upsert_condition
from llmfleet.api.kinds import KINDS
from llmfleet.api.loading import describe_validation_error, snapshot_of
from llmfleet.api.references import ObjectKey, Problem, check_references
from llmfleet.api.region import Region
from llmfleet.api.resource import Resource
from llmfleet.cycle.screen import object_problem


@dataclass(frozen=True)
class ValidationSettings:
    """Knobs of the validating controller."""

    recheck_seconds: float = 30.0
    """How often every object is re-checked against the others."""


def _parse(kind: type[Resource], body: kopf.Body) -> tuple[Resource | None, list[Problem]]:
    raw = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
    }
    try:
        return kind.from_wire(raw), []
    except ValidationError as err:
        return None, [Problem("InvalidSpec", describe_validation_error(err))]


def region_summary(region: Region, status: dict[str, Any]) -> dict[str, Any]:
    """Printer-column figures of a Region: pools, GPUs and USD/h now, GPUs at max.

    Until the controller has observed a pool's nodes (``status.pools[].nodes``), the pool
    is counted at its ``minNodes``, the floor it is kept at.
    """
    observed = {p.get("name"): p.get("nodes") for p in status.get("pools") or []}
    gpus = 0
    usd = 0.0
    for p in region.spec.pools:
        nodes = observed.get(p.name)
        nodes = p.min_nodes if nodes is None else int(nodes)
        gpus += nodes * p.gpus_per_node
        usd += nodes * p.price_per_node_hour
    return {
        "poolCount": len(region.spec.pools),
        "gpus": gpus,
        "maxGpus": sum(p.max_nodes * p.gpus_per_node for p in region.spec.pools),
        "usdPerHour": round(usd, 2),
    }


def register(registry: kopf.OperatorRegistry, settings: ValidationSettings) -> None:
    """Add the validation handlers for every llmfleet kind to ``registry``."""
    for kind in KINDS:
        _register_kind(registry, settings, kind)


def _index_name(kind: type[Resource]) -> str:
    return f"idx_{kind.info.plural}"


def _register_kind(
    registry: kopf.OperatorRegistry, settings: ValidationSettings, kind: type[Resource]
) -> None:
    plural = kind.info.plural
    index_name = _index_name(kind)

    def index_fn(body: kopf.Body, **_: Any) -> dict[ObjectKey, Resource]:
        obj, _problems = _parse(kind, body)
        return {} if obj is None else {ObjectKey.of(obj): obj}

    index_fn.__name__ = index_name
    kopf.index(GROUP, VERSION, plural, registry=registry, id=index_name)(index_fn)

    def validate(
        body: kopf.Body,
        status: kopf.Status,
        patch: kopf.Patch,
        logger: logging.Logger,
        **kwargs: Any,
    ) -> None:
        obj, problems = _parse(kind, body)
        if obj is not None:
            objects: list[Resource] = []
            for k in KINDS:
                idx = kwargs.get(_index_name(k))
                if idx is not None:
                    objects += [o for values in idx.values() for o in values]
            key = ObjectKey.of(obj)
            objects = [o for o in objects if ObjectKey.of(o) != key] + [obj]
            problems = check_references(snapshot_of(objects)).get(key, [])
            if not problems:
                unusable = object_problem(obj)
                if unusable is not None:
                    field, message = unusable
                    problems = [Problem(Reason.CANNOT_BE_PLANNED, f"{field}: {message}")]
        state: ConditionStatus
        if problems:
            state, reason = "False", problems[0].reason
            message = "; ".join(p.message for p in problems)
        else:
            state, reason, message = "True", "ReferencesResolved", "every reference resolves"
        now = datetime.now(UTC)
        generation = body.metadata.get("generation")
        _, changed = upsert_condition(
            list(status.get("conditions") or []), VALID, state, reason, message, now, generation
        )

        def set_valid(fresh: kopf.RawBody) -> None:
            # Applied by kopf to the freshest body as a JSON patch guarded by its
            # resourceVersion (retried on conflict), so the conditions other writers own
            # (Throttling, Planned, ...) are never overwritten with a stale list.
            st = fresh.setdefault("status", {})
            st["conditions"], _ = upsert_condition(
                list(st.get("conditions") or []), VALID, state, reason, message, now, generation
            )
        extra: dict[str, Any] = {}
        if isinstance(obj, Region):
            summary = region_summary(obj, dict(status))
            extra = {k: v for k, v in summary.items() if status.get(k) != v}
        if changed:
            patch.fns.append(set_valid)
        if changed or status.get("observedGeneration") != generation:
            patch.status["observedGeneration"] = generation
        for field, value in extra.items():
            patch.status[field] = value
        if changed:
            logger.info("Valid=%s: %s", state, message)
            kopf.event(
                body,
                type="Warning" if problems else "Normal",
                reason=reason,
                message=message[:1000],
            )

    validate.__name__ = f"validate_{plural}"
    # kopf's handler protocols spell out every kwarg; ours names only what it uses.
    handler: Any = validate
    for decorator in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorator(GROUP, VERSION, plural, registry=registry, id=f"validate-{decorator.__name__}")(
            handler
        )
    kopf.timer(
        GROUP,
        VERSION,
        plural,
        registry=registry,
        id="revalidate",
        interval=settings.recheck_seconds,
        initial_delay=settings.recheck_seconds / 2,
    )(handler)
