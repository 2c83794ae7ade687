"""The router service's ConfigMap and the HTTPRoutes that follow its decision (pure render).

**ConfigMap** (:func:`router_config_document`, :func:`render_router_config_map`): one
``data["router.json"]`` document, ``apiVersion: llmfleet.dev/router/v1`` (the schema
:func:`llmfleet.routing.models.serving.parse_config` reads), sorted keys, so the same
tiers and calibration give the same bytes::

    {"apiVersion": "llmfleet.dev/router/v1",
     "headers": {"tier": "x-tier", "tenant": "x-tenant-id", "model": "x-ai-eg-model"},
     "tiers": {"<tier>": {
        "kind": "quality", "reference": "<LLMModel>", "lambda": 0.42 | null,
        "costScale": 1.2e-4 | null, "bits": 16, "artefact": "<tier>.npz",
        "candidates": [{"model": "<LLMModel>", "servedName": "<served name>",
                        "costIntercept": <USD>, "costPerChar": <USD per prompt character>}],
        "tenants": {"<tenant id>": ["<LLMModel>", ...]},
        "calibration": {"maxQualityDrop": 1.0, "dropPoints": .., "ucbDropPoints": ..,
                        "saving": .., "confidence": 0.9, "threshold": "calibrated" | "fixed"
                        | "none"}}}}

Per routed SLATier: the candidates in the artefact's column order; ``lambda`` is the tier's
fixed ``router.threshold`` when set, else the calibration's; with neither (or no fitted
router) ``lambda`` is null and every request goes to the reference. Costs are the
calibration's prompt-length fit when it has one (the knob was set on them), else the
LLMModels' ``routingCost``: ``intercept = outputUsd * meanOutputTokens / 1e6``,
``perChar = promptUsd / 1e6 / 4`` (4 characters a token). ``tenants``: each TenantQuota of
the tier that lists ``spec.models`` may be routed only to those (the reference always).

**HTTPRoutes** (:func:`router_route_entries`, :func:`render_router_httproutes`): the router
sets ``x-ai-eg-model: <served name>`` on every request it forwards, so the routes match that
header (plus the tier or tenant header) instead of the body-based router's, through
:func:`llmfleet.kube.render.render_httproutes`'s ``model_header``. A routed tier's candidate
the plan gives no route for that tier gets one: per origin, the model's mean split over its
other tiers there, or, where the plan routes it nowhere, an even split over the regions that
serve it; a candidate served nowhere is reported (its requests would find no backend).
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmfleet.api.model import LLMModel
from llmfleet.api.policy import ParentRef
from llmfleet.api.tenant import TenantQuota
from llmfleet.api.tier import SLATier
from llmfleet.kube.render import (
    OBJECT_NAME_LIMIT,
    identity_name,
    render_config_map,
    render_httproutes,
)
from llmfleet.routing.models.serving import (
    CONFIG_API_VERSION,
    ConfigError,
    FittedTier,
    RouterShares,
    TierShares,
    members_to_arrays,
    parse_shares,
    shares_document,
)
from llmfleet.routing.table import RouteEntry, RoutingTable
from llmfleet.routing.weights import integer_weights

ROUTER_MODEL_HEADER = "x-ai-eg-model"
"""The header the router service sets to the chosen served name (Envoy AI Gateway's)."""
ROUTER_CONFIG_KEY = "router.json"
SHARES_KEY = "shares.json"
"""The ConfigMap key holding the router's calibrated shares (``shares_document``)."""
ROUTER_CONFIG_MAP = "llmfleet-router"
"""The router's ConfigMap, in the fleet namespace of every region's cluster (FleetPolicy
``spec.ingress`` has no field for its name yet)."""
ROUTER_COMPONENT = "model-router"
CHARS_PER_TOKEN = 4
CONFIG_MAP_LIMIT = 1_000_000
"""Most bytes :func:`calibrated_router_data` puts in the router's ConfigMap: the API server
refuses a ConfigMap whose data and binaryData (keys and values, binaryData counted raw)
exceed 1 MiB; the rest is left for the object's metadata."""


@dataclass(frozen=True)
class TierCalibration:
    """A tier's fitted router as the ConfigMap names it: its artefact file, the candidates
    in the artefact's column order, its knob and cost fit, what calibration measured."""

    kind: str
    models: tuple[str, ...]
    artefact: str
    bits: int
    lam: float | None
    scale: float | None
    cost: Mapping[str, tuple[float, float]] | None = None
    """LLMModel -> (intercept, per prompt character) the knob was calibrated on."""
    drop_points: float = 0.0
    ucb_drop_points: float = 0.0
    saving: float = 0.0

    @staticmethod
    def of(fitted: FittedTier, artefact: str) -> TierCalibration:
        """The calibration of a fitted tier, whose arrays are written to ``artefact``."""
        cost = {
            m: (float(fitted.cost.intercept[j]), float(fitted.cost.slope[j]))
            for j, m in enumerate(fitted.models)
        }
        return TierCalibration(
            fitted.kind, fitted.models, artefact, fitted.bits, fitted.lam, fitted.scale, cost,
            fitted.drop_points, fitted.ucb_drop_points, fitted.saving,
        )  # fmt: skip


def _api_cost(model: LLMModel) -> tuple[float, float]:
    rc = model.spec.routing_cost
    if rc is None:
        raise ValueError(f"LLMModel {model.name}: spec.routingCost is required of a candidate")
    return (
        rc.output_usd_per_million_tokens * rc.mean_output_tokens / 1e6,
        rc.prompt_usd_per_million_tokens / 1e6 / CHARS_PER_TOKEN,
    )


def _tier_document(
    tier: SLATier, models: Mapping[str, LLMModel], tenants: Sequence[TenantQuota],
    cal: TierCalibration | None,
) -> dict[str, Any]:  # fmt: skip
    routing = tier.spec.routing
    assert routing is not None
    where = f"SLATier {tier.name}: spec.routing"
    missing = [c for c in routing.candidates if c not in models]
    if missing:
        raise ValueError(f"{where}.candidates: no LLMModel {', '.join(missing)}")
    order = list(routing.candidates)
    if cal is not None:
        if cal.kind != routing.router.kind:
            raise ValueError(
                f"{where}.router.kind is {routing.router.kind!r}, the calibration's router "
                f"{cal.kind!r}: refit it"
            )
        if sorted(cal.models) != sorted(order):
            raise ValueError(
                f"{where}.candidates {sorted(order)} differ from the calibrated models "
                f"{sorted(cal.models)}: refit it"
            )
        order = list(cal.models)
    fixed = routing.router.threshold
    lam = fixed if fixed is not None and cal is not None else (cal.lam if cal else None)
    source = "fixed" if fixed is not None and cal is not None else (
        "calibrated" if cal is not None and cal.lam is not None else "none")  # fmt: skip
    candidates = []
    for name in order:
        a, b = cal.cost[name] if cal is not None and cal.cost else _api_cost(models[name])
        candidates.append({
            "model": name, "servedName": models[name].spec.served_model_name,
            "costIntercept": a, "costPerChar": b,
        })  # fmt: skip
    allowed = {}
    for t in sorted(tenants, key=lambda t: t.spec.tenant_id):
        if t.spec.tier == tier.name and t.namespace == tier.namespace and t.spec.models:
            allowed[t.spec.tenant_id] = sorted(set(t.spec.models) & set(order))
    doc: dict[str, Any] = {
        "kind": routing.router.kind,
        "reference": routing.reference_model,
        "lambda": lam,
        "costScale": cal.scale if cal is not None else None,
        "candidates": candidates,
        "tenants": allowed,
        "calibration": {
            "maxQualityDrop": routing.max_quality_drop,
            "metric": routing.metric,
            "confidence": routing.router.confidence,
            "threshold": source,
            "dropPoints": cal.drop_points if cal else None,
            "ucbDropPoints": cal.ucb_drop_points if cal else None,
            "saving": cal.saving if cal else None,
        },
    }
    if cal is not None:
        doc["bits"] = cal.bits
        doc["artefact"] = cal.artefact
    return doc


def router_config_document(
    tiers: Sequence[SLATier],
    models: Sequence[LLMModel],
    tenants: Sequence[TenantQuota],
    calibrations: Mapping[str, TierCalibration],
    *,
    tier_header: str = "x-tier",
    tenant_header: str = "x-tenant-id",
) -> dict[str, Any]:
    """The router service's configuration for every tier with ``spec.routing`` (module
    docstring). Raises ``ValueError`` naming the tier and field when a tier and its
    calibration disagree."""
    out: dict[str, Any] = {}
    for tier in sorted(tiers, key=lambda t: t.name):
        if tier.spec.routing is None:
            continue
        by_name = {m.name: m for m in models if m.namespace == tier.namespace}
        out[tier.name] = _tier_document(tier, by_name, tenants, calibrations.get(tier.name))
    return {
        "apiVersion": CONFIG_API_VERSION,
        "headers": {"tier": tier_header, "tenant": tenant_header, "model": ROUTER_MODEL_HEADER},
        "tiers": out,
    }


def render_router_config_map(doc: Mapping[str, Any], name: str, namespace: str) -> dict[str, Any]:
    """The ConfigMap the router service mounts: ``data["router.json"]``, sorted keys."""
    text = json.dumps(doc, sort_keys=True, indent=1, allow_nan=False)
    return render_config_map(name, namespace, {ROUTER_CONFIG_KEY: text}, component=ROUTER_COMPONENT)


def calibrations_from_document(doc: Mapping[str, Any]) -> dict[str, TierCalibration]:
    """The calibrations a stored ``router.json`` holds (its tiers with an ``artefact``), to
    render it again with them (module docstring). A tier whose entry is not of the schema is
    left out (published uncalibrated). A tier's fixed ``threshold`` is not its calibrated
    knob: such a tier's ``lambda`` is not carried (None until recalibrated)."""
    out: dict[str, TierCalibration] = {}
    tiers = doc.get("tiers") if isinstance(doc, Mapping) else None
    for name, t in (tiers or {}).items() if isinstance(tiers, Mapping) else ():
        try:
            artefact = t["artefact"]
            if not isinstance(artefact, str) or not artefact:
                continue
            cal = t.get("calibration") or {}
            fixed = cal.get("threshold") == "fixed"
            lam = t.get("lambda")
            scale = t.get("costScale")
            cands = t["candidates"]
            out[str(name)] = TierCalibration(
                kind=str(t["kind"]),
                models=tuple(str(c["model"]) for c in cands),
                artefact=artefact,
                bits=int(t["bits"]),
                lam=None if fixed or lam is None else float(lam),
                scale=None if scale is None else float(scale),
                cost={
                    str(c["model"]): (float(c["costIntercept"]), float(c["costPerChar"]))
                    for c in cands
                },
                drop_points=float(cal.get("dropPoints") or 0.0),
                ucb_drop_points=float(cal.get("ucbDropPoints") or 0.0),
                saving=float(cal.get("saving") or 0.0),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


def stored_calibrations(config_map: Mapping[str, Any] | None) -> dict[str, TierCalibration]:
    """:func:`calibrations_from_document` of a stored router ConfigMap (None, no or a bad
    ``router.json``: none)."""
    text = ((config_map or {}).get("data") or {}).get(ROUTER_CONFIG_KEY)
    if not isinstance(text, str):
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return calibrations_from_document(doc) if isinstance(doc, dict) else {}


def shares_from_config_map(config_map: Mapping[str, Any] | None) -> RouterShares | None:
    """The router shares under ``data["shares.json"]`` (None: no ConfigMap or no key);
    :class:`ConfigError` naming the key when the document is not JSON or not of the schema."""
    data = (config_map or {}).get("data") or {}
    text = data.get(SHARES_KEY) if isinstance(data, Mapping) else None
    if text is None:
        return None
    where = f"data[{SHARES_KEY!r}]"
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    try:
        return parse_shares(doc)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def router_route_name(model: str, part: int = 1) -> str:
    """``llmfleet-router-<model>[-<part>]-<hash>``: the router's HTTPRoutes of ``model``,
    apart from its body-based ``llmfleet-<model>`` ones."""
    readable = ("llmfleet-router", model, *([str(part)] if part > 1 else []))
    return identity_name(readable, ("router", model, str(part)), limit=OBJECT_NAME_LIMIT)


def router_route_entries(
    table: RoutingTable,
    tiers: Sequence[SLATier],
    serving_regions: Mapping[str, Sequence[str]],
    total: int = 1000,
) -> tuple[list[RouteEntry], list[str]]:
    """The plan's route entries plus one per (routed tier, candidate, origin) the plan has
    none for (module docstring); and the problems (a candidate served nowhere)."""
    entries = list(table.entries)
    have = {(e.model, e.tier, e.origin) for e in entries}
    problems: list[str] = []
    for tier in sorted(tiers, key=lambda t: t.name):
        routing = tier.spec.routing
        if routing is None:
            continue
        origins = sorted({e.origin for e in table.entries if e.tier == tier.name}) or sorted(
            {e.origin for e in table.entries}
        )
        for model in routing.candidates:
            own = [e for e in table.entries if e.model == model]
            regions = sorted(serving_regions.get(model, ()))
            if not own and not regions:
                problems.append(
                    f"SLATier {tier.name}: spec.routing.candidates: LLMModel {model} is served "
                    "in no region; the router's requests to it find no backend"
                )
                continue
            for origin in origins:
                if (model, tier.name, origin) in have:
                    continue
                here = [e for e in own if e.origin == origin]
                split: dict[str, float] = defaultdict(float)
                if here:
                    for e in here:
                        for r, f in e.fractions:
                            split[r] += f / len(here)
                else:
                    for r in regions or sorted({r for e in own for r in e.regions}):
                        split[r] = 1.0
                    norm = sum(split.values())
                    split = defaultdict(float, {r: f / norm for r, f in split.items()})
                weights = integer_weights(split, total)
                entries.append(RouteEntry(
                    model, tier.name, origin, tuple(sorted(weights.items())),
                    tuple(sorted(split.items())),
                ))  # fmt: skip
                have.add((model, tier.name, origin))
    return sorted(entries, key=lambda e: (e.model, e.origin, e.tier)), problems


def render_router_httproutes(
    model: LLMModel,
    entries: Sequence[RouteEntry],
    *,
    namespace: str,
    parent_refs: Sequence[ParentRef],
    policy_namespace: str,
    tier_header: str,
    tenant_header: str,
    local_regions: frozenset[str],
    match_origin: bool,
    total: int = 1000,
) -> list[dict[str, Any]]:
    """One model's HTTPRoutes matching the router's ``x-ai-eg-model`` header, named by
    :func:`router_route_name`."""
    routes = render_httproutes(
        model, [e for e in entries if e.model == model.name], namespace=namespace,
        parent_refs=parent_refs, policy_namespace=policy_namespace, tier_header=tier_header,
        tenant_header=tenant_header, local_regions=local_regions, match_origin=match_origin,
        total=total, model_header=ROUTER_MODEL_HEADER,
    )  # fmt: skip
    for part, route in enumerate(routes, start=1):
        route["metadata"]["name"] = router_route_name(model.name, part)
    return routes


# --------------------------------------------------------------------------- calibration


class ConfigMapTooLarge(ValueError):
    """The calibrated router does not fit in one ConfigMap (:data:`CONFIG_MAP_LIMIT`)."""

    def __init__(self, message: str, size: int, artefact_bytes: int, bits: int,
                 suggested_bits: int | None) -> None:  # fmt: skip
        super().__init__(message)
        self.size = size
        self.artefact_bytes = artefact_bytes
        self.bits = bits
        self.suggested_bits = suggested_bits
        """The largest hashing width whose artefact should fit (None: none does)."""


@dataclass(frozen=True)
class CalibratedRouter:
    """What calibrating one tier writes into the router's ConfigMap: ``data``
    (``router.json``, ``shares.json``), ``binary`` (each calibrated tier's ``.npz``, raw
    bytes), the documents they hold, the size counted against :data:`CONFIG_MAP_LIMIT`, and
    what was not carried over from the stored ConfigMap (``notes``)."""

    tier: str
    artefact: str
    data: Mapping[str, str]
    binary: Mapping[str, bytes]
    document: Mapping[str, Any]
    shares: RouterShares
    size: int
    notes: tuple[str, ...] = ()

    @property
    def artefact_bytes(self) -> int:
        return len(self.binary[self.artefact])

    def config_map(self, namespace: str, name: str = ROUTER_CONFIG_MAP) -> dict[str, Any]:
        """The ConfigMap manifest (``binaryData`` base64, as the API carries it)."""
        cm = render_config_map(name, namespace, self.data, component=ROUTER_COMPONENT)
        cm["binaryData"] = {
            k: base64.b64encode(v).decode("ascii") for k, v in sorted(self.binary.items())
        }
        return cm


def artefact_bytes(fitted: FittedTier) -> bytes:
    """The fitted tier's members as a compressed ``.npz`` (what ``np.load`` reads back)."""
    buf = io.BytesIO()
    arrays: dict[str, Any] = dict(members_to_arrays(fitted.members))
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _stored_binary(config_map: Mapping[str, Any] | None) -> dict[str, bytes]:
    raw = (config_map or {}).get("binaryData") or {}
    out: dict[str, bytes] = {}
    for key, value in raw.items() if isinstance(raw, Mapping) else ():
        try:
            out[str(key)] = (
                value if isinstance(value, bytes) else base64.b64decode(value, validate=True)
            )
        except (ValueError, TypeError):
            continue
    return out


def _routes(tier: SLATier, models: Sequence[LLMModel]) -> bool:
    """Whether the operator publishes ``tier`` (it routes among LLMModels that exist)."""
    routing = tier.spec.routing
    names = {m.name for m in models if m.namespace == tier.namespace}
    return routing is not None and {routing.reference_model, *routing.candidates} <= names


def calibrated_router_data(
    tier: SLATier,
    fitted: FittedTier,
    shares: TierShares,
    tiers: Sequence[SLATier],
    models: Sequence[LLMModel],
    tenants: Sequence[TenantQuota],
    stored: Mapping[str, Any] | None = None,
    *,
    tier_header: str = "x-tier",
    tenant_header: str = "x-tenant-id",
    limit: int = CONFIG_MAP_LIMIT,
) -> CalibratedRouter:
    """The router ConfigMap's content with ``tier``'s new calibration (``fitted``, its
    candidates LLMModel names, and the planner's ``shares`` of it; the artefact
    ``<tier>.npz``). From ``stored`` (the ConfigMap as read, or None) every other routed
    tier's calibration is kept with its artefact and its shares, as the actuation keeps them;
    one that no longer fits its tier, or whose artefact is missing, is dropped (the tier
    published uncalibrated) and named in ``notes``.

    Raises ``ValueError`` naming the field when ``tier`` and its fit disagree, and
    :class:`ConfigMapTooLarge` (with the hashing width that would fit) when the content
    exceeds ``limit`` bytes."""
    if tier.spec.routing is None:
        raise ValueError(f"SLATier {tier.name}: spec.routing is not set (the tier does not route)")
    if shares.tier != tier.name:
        raise ValueError(f"the shares are of tier {shares.tier!r}, not {tier.name!r}")
    artefact = f"{tier.name}.npz"
    npz = artefact_bytes(fitted)
    mine = router_config_document(
        [tier], models, tenants, {tier.name: TierCalibration.of(fitted, artefact)},
        tier_header=tier_header, tenant_header=tenant_header,
    )  # fmt: skip
    doc = router_config_document(
        [], models, tenants, {}, tier_header=tier_header, tenant_header=tenant_header
    )
    notes: list[str] = []
    stored_cals = stored_calibrations(stored)
    stored_npz = _stored_binary(stored)
    binary: dict[str, bytes] = {artefact: npz}
    for other in sorted(tiers, key=lambda t: t.name):
        if other.name == tier.name or not _routes(other, models):
            continue
        cal = stored_cals.get(other.name)
        if cal is not None and (cal.artefact == artefact or cal.artefact not in stored_npz):
            notes.append(f"SLATier {other.name}: the stored calibration's artefact "
                         f"{cal.artefact!r} is not in the ConfigMap; published uncalibrated")  # fmt: skip
            cal = None
        one = None
        if cal is not None:
            try:
                one = router_config_document([other], models, tenants, {other.name: cal},
                                             tier_header=tier_header, tenant_header=tenant_header)  # fmt: skip
                binary[cal.artefact] = stored_npz[cal.artefact]
            except ValueError as err:
                notes.append(f"SLATier {other.name}: the stored calibration is not used "
                             f"(published uncalibrated): {err}")  # fmt: skip
        if one is None:
            try:
                one = router_config_document([other], models, tenants, {},
                                             tier_header=tier_header, tenant_header=tenant_header)  # fmt: skip
            except ValueError as err:
                notes.append(f"SLATier {other.name}: left out: {err}")
                continue
        doc["tiers"].update(one["tiers"])
    doc["tiers"].update(mine["tiers"])
    doc["tiers"] = dict(sorted(doc["tiers"].items()))

    try:
        old = shares_from_config_map(stored)
    except ConfigError as err:
        notes.append(f"the stored {SHARES_KEY} is not used: {err}")
        old = None
    kept = [t for t in (old.tiers if old else ()) if t.tier in doc["tiers"] and t.tier != tier.name]
    all_shares = RouterShares(tuple(sorted([*kept, shares], key=lambda t: t.tier)))
    data = {
        ROUTER_CONFIG_KEY: json.dumps(doc, sort_keys=True, indent=1, allow_nan=False),
        SHARES_KEY: json.dumps(
            shares_document(all_shares), sort_keys=True, indent=1, allow_nan=False
        ),
    }
    size = sum(len(k) + len(v.encode("utf-8")) for k, v in data.items()) + sum(
        len(k) + len(v) for k, v in binary.items()
    )
    if size > limit:
        rest = size - len(npz)
        room = limit - rest
        suggested = None
        if room > 0:
            # the weights (and projections) have 2**bits columns: halving them per bit less
            down = max(1, math.ceil(math.log2(len(npz) / room)))
            suggested = fitted.bits - down if fitted.bits - down >= 1 else None
        hint = (f"fit with fewer hashing bits ({suggested} should fit)" if suggested is not None
                else "the other tiers' artefacts and documents leave no room")  # fmt: skip
        raise ConfigMapTooLarge(
            f"the router's ConfigMap would hold {size:,} bytes, over the {limit:,} a ConfigMap "
            f"may (1 MiB): the artefact {artefact} is {len(npz):,} bytes at {fitted.bits} "
            f"hashing bits; {hint}",
            size, len(npz), fitted.bits, suggested,
        )  # fmt: skip
    return CalibratedRouter(tier.name, artefact, data, binary, doc, all_shares, size, tuple(notes))
