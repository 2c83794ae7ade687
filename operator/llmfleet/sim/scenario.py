"""Scenario files for the digital twin: the fleet (CRD objects) plus the workload mapping.

A scenario (YAML) has three parts:

* ``fleet``: Regions, LLMModels, SLATiers, TenantQuotas and a FleetPolicy — the same objects
  the operator reads (``llmfleet.api``), parsed and checked the same way;
* ``workload``: which trace client feeds which tenant from which home region, the traffic
  scale factor, the number of days and the seed;
* ``engine``: simulator knobs (capacity scale, batch-size slowdown, first-token step, retry
  limit, spot storms).

**Names.** :func:`load_scenario` takes a path to a scenario file, or the name of one of the
scenarios shipped in ``llmfleet/sim/scenarios/`` (:func:`known_scenarios`: ``default``,
``storm``); ``llmfleet simulate storm`` runs the embedded ``storm.yaml``.

**Spot storms.** ``engine.spot_storms`` lists windows in which spot pools are interrupted
more often than their ``spotInterruptionRatePerHour`` (the engine's hazard, see
:mod:`llmfleet.sim.engine`). Only the twin knows them: the policies see the pools' base
rates and learn of a storm from the interruptions it causes.

**Capacity scale.** A Python discrete-event twin handles about 1e5 requests per policy in
seconds, which is about one real replica's traffic. To keep fleets of dozens of replicas,
``engine.capacity_scale = k`` divides every profile's decode tokens/s and max concurrent
sequences by ``k`` (per-sequence decode speed, prefill speed and so TTFT are unchanged): a
simulated replica is a 1/k slice of a real one, and GPU-hours and USD are reported for the
slices (ratios between policies are what the twin compares). Policies see the scaled
profiles through :meth:`Scenario.snapshot`, so planner and engine agree.

**Routing.** ``routing`` lists the tiers whose requests a quality-aware router sends to one
of the tier's ``spec.routing.candidates`` (issue 13): per tier, ``enabled`` (on/off), the
router's calibrated shares (``shares``: a shares document, :data:`~llmfleet.routing.models.
serving.SHARES_API_VERSION`, inline or as a JSON file: a path relative to the scenario file,
or the name of one shipped beside the embedded scenarios) and ``seed`` (of the per-request
draws). Every client of a routed tier must name the tier's reference model (what a client
asks for when it leaves the choice to the router). :mod:`llmfleet.sim.workload` assigns each
such request a model by the shares; the ``llmfleet`` policy plans with the same shares
(:meth:`Scenario.router_shares`); :meth:`Scenario.with_routing` turns them all off or on
(``llmfleet simulate`` runs llmfleet both ways and reports the difference).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from llmfleet.api.loading import parse_object, snapshot_of
from llmfleet.api.model import LLMModel
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource
from llmfleet.routing.models.serving import ConfigError, RouterShares, TierShares, parse_shares


class ScenarioError(ValueError):
    """The scenario file is malformed; the message names the entry."""


class ClientMap(BaseModel):
    """One trace client feeding one tenant from one home region."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    """``servegen:<pool>/<chunk>`` (e.g. ``servegen:m-mid/60``) or ``azure:<code|conv>``."""
    tenant: str
    """TenantQuota tenantId; the tenant's tier comes from its TenantQuota."""
    region: str
    """Home (origin) region; the client's clock is shifted to the region's UTC offset."""
    model: str | None = None
    """LLMModel; default the tenant's first model."""
    scale: float = Field(default=1.0, gt=0)
    """Extra rate multiplier for this client (on top of ``workload.scale``)."""


class WorkloadSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    days: float = Field(default=3.0, gt=0, le=14)
    start_day: int = Field(default=0, ge=0, le=13)
    """Trace day the simulation starts at (local midnight of each home region)."""
    history_days: int = Field(default=2, ge=0, le=12)
    """Days of demand history (expected rates from the curves) a controller has at start."""
    scale: float = Field(default=1.0, gt=0)
    """Rate multiplier for every client (the traces' rates are production rates)."""
    seed: int = 0
    trace_utc_offset_hours: float = 8.0
    """UTC offset of the traces' clock (ServeGen: Alibaba Cloud, UTC+8)."""
    start_unix: float = 1_700_000_000.0 - 1_700_000_000.0 % 86400
    """Unix time of the simulation start (a UTC midnight)."""
    clients: list[ClientMap] = Field(min_length=1)


class SpotStorm(BaseModel):
    """A window of raised spot interruptions: from ``start_hour`` (hours after the
    simulation start) for ``hours`` hours, the named spot pool of ``region`` (every spot pool
    of the region when ``pool`` is absent) is interrupted at ``rate_per_hour`` per node, or
    at its own ``spotInterruptionRatePerHour`` if that is higher."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str
    pool: str | None = None
    start_hour: float = Field(ge=0)
    hours: float = Field(gt=0)
    rate_per_hour: float = Field(gt=0, le=3600)

    @property
    def window_seconds(self) -> tuple[float, float]:
        """``[start, end)`` in engine seconds (0 = the simulation start)."""
        return self.start_hour * 3600.0, (self.start_hour + self.hours) * 3600.0


class EngineSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity_scale: float = Field(default=1.0, ge=1.0)
    """Divide decode tokens/s and max sequences of every profile by this (see module doc)."""
    saturation_fraction: float = Field(default=0.25, gt=0, le=1)
    """Batch size (fraction of max sequences) from which decode throughput is saturated:
    each of ``n`` sequences decodes at ``D / max(n, s C)`` tokens/s."""
    first_token_steps: float = Field(default=0.0, ge=0)
    """TTFT adds this many unloaded decode steps, ``k s C / D`` seconds, after the prefill
    (vLLM emits the first token from the step that ends the prefill). 0 (default): TTFT ends
    with the prefill; 1: what llm-d's BLIS vLLM tables show (``llmfleet bench calibrate``)."""
    max_retries: int = Field(default=3, ge=0)
    queue_limit_factor: float = Field(default=8.0, gt=0)
    """A replica rejects (``queue-full``) when more than this x max sequences are waiting."""
    pending_timeout_seconds: float = Field(default=600.0, gt=0)
    """Interactive requests with no ready replica anywhere are rejected after this."""
    batch_release_utilization: float = Field(default=0.6, gt=0, le=1)
    """Deadline-queue work is released to replicas at or below this slot utilisation."""
    tick_seconds: float = Field(default=30.0, gt=0)
    spot_storms: list[SpotStorm] = Field(default_factory=list)
    """Windows of raised spot interruption rates (module doc); the policies are not told."""


class RoutingSpec(BaseModel):
    """One routed tier of the twin (module doc, **Routing**)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: str
    """SLATier name; the tier needs ``spec.routing``."""
    enabled: bool = True
    shares: str | dict[str, Any]
    """A shares document (``llmfleet.dev/router-shares/v1``) with an entry for ``tier``,
    inline or as a JSON file (module doc)."""
    seed: int = 0
    """Seed of the per-request model draws (with the workload's seed)."""


class Scenario(BaseModel):
    """A parsed scenario: workload, engine settings and the fleet objects (raw documents)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "scenario"
    workload: WorkloadSpec
    engine: EngineSpec = Field(default_factory=EngineSpec)
    fleet: list[dict[str, Any]] = Field(min_length=1)
    routing: list[RoutingSpec] = Field(default_factory=list)
    source_dir: str | None = None
    """Directory relative ``routing[].shares`` files are read from (set by
    :func:`load_scenario`; None: the working directory)."""

    def tier_shares(self) -> list[tuple[RoutingSpec, TierShares]]:
        """Each ``routing`` entry with its tier's shares, read and parsed (errors name the
        entry)."""
        out = []
        for i, r in enumerate(self.routing):
            where = f"{self.name}: routing[{i}].shares"
            doc: Any = r.shares
            if isinstance(doc, str):
                doc = json.loads(_shares_text(doc, self.source_dir, where))
            try:
                parsed = parse_shares(doc)
            except ConfigError as err:
                raise ScenarioError(f"{where}: {err}") from err
            ts = parsed.get(r.tier)
            if ts is None:
                raise ScenarioError(f"{where}: no shares for tier {r.tier!r} (it has "
                                    f"{', '.join(t.tier for t in parsed.tiers) or 'none'})")
            out.append((r, ts))
        return out

    def router_shares(self) -> RouterShares | None:
        """The enabled routed tiers' shares, as the twin's ``llmfleet`` policy plans with
        them (labelled ``served``: the twin's history counts the model that answered), or
        None when no tier is routed."""
        tiers = tuple(ts for r, ts in self.tier_shares() if r.enabled)
        return RouterShares(tiers, demand_label="served") if tiers else None

    def with_routing(self, enabled: bool) -> Scenario:
        """The scenario with every ``routing`` entry turned on or off."""
        routing = [r.model_copy(update={"enabled": enabled}) for r in self.routing]
        return self.model_copy(update={"routing": routing})

    def objects(self) -> list[Resource]:
        """The fleet objects with profiles scaled by ``engine.capacity_scale``."""
        out: list[Resource] = []
        for i, doc in enumerate(self.fleet):
            obj = parse_object(doc, namespace="default", where=f"{self.name}: fleet[{i}]")
            if isinstance(obj, LLMModel) and self.engine.capacity_scale != 1.0:
                obj = _scaled(obj, self.engine.capacity_scale)
            out.append(obj)
        return out

    def snapshot(self) -> FleetSnapshot:
        snap = snapshot_of(self.objects())
        tenants = {t.spec.tenant_id for t in snap.tenants}
        regions = {r.metadata.name for r in snap.regions}
        models = {m.metadata.name for m in snap.models}
        for i, c in enumerate(self.workload.clients):
            if c.tenant not in tenants:
                raise ScenarioError(f"{self.name}: workload.clients[{i}].tenant {c.tenant!r}: "
                                    "no TenantQuota with that tenantId")
            if c.region not in regions:
                raise ScenarioError(f"{self.name}: workload.clients[{i}].region {c.region!r}: "
                                    "no such Region")
            if c.model is not None and c.model not in models:
                raise ScenarioError(f"{self.name}: workload.clients[{i}].model {c.model!r}: "
                                    "no such LLMModel")
        if not snap.policies:
            raise ScenarioError(f"{self.name}: fleet has no FleetPolicy")
        pools = {(r.metadata.name, p.name): p.capacity_type for r in snap.regions
                 for p in r.spec.pools}
        for i, st in enumerate(self.engine.spot_storms):
            where = f"{self.name}: engine.spot_storms[{i}]"
            if st.region not in regions:
                raise ScenarioError(f"{where}.region {st.region!r}: no such Region")
            if st.pool is None:
                if "spot" not in {t for (r, _), t in pools.items() if r == st.region}:
                    raise ScenarioError(f"{where}.region {st.region!r}: the region has no "
                                        "spot pool")
            elif (st.region, st.pool) not in pools:
                raise ScenarioError(f"{where}.pool {st.pool!r}: no such pool in Region "
                                    f"{st.region!r}")
            elif pools[(st.region, st.pool)] != "spot":
                raise ScenarioError(f"{where}.pool {st.pool!r}: not a spot pool "
                                    "(capacityType on-demand)")
        self._check_routing(snap)
        return snap

    def _check_routing(self, snap: FleetSnapshot) -> None:
        tiers = {t.metadata.name: t for t in snap.tiers}
        models = {m.metadata.name for m in snap.models}
        quotas = {t.spec.tenant_id: t for t in snap.tenants}
        seen: set[str] = set()
        for i, (r, ts) in enumerate(self.tier_shares()):
            where = f"{self.name}: routing[{i}]"
            if r.tier in seen:
                raise ScenarioError(f"{where}.tier {r.tier!r}: routed twice")
            seen.add(r.tier)
            tier = tiers.get(r.tier)
            if tier is None:
                raise ScenarioError(f"{where}.tier {r.tier!r}: no such SLATier")
            spec = tier.spec.routing
            if spec is None:
                raise ScenarioError(f"{where}.tier {r.tier!r}: the SLATier has no spec.routing")
            if ts.reference != spec.reference_model:
                raise ScenarioError(f"{where}.shares: reference {ts.reference!r}, the tier's "
                                    f"spec.routing.referenceModel is {spec.reference_model!r}")
            for o in ts.options:
                if o.model not in spec.candidates or o.model not in models:
                    raise ScenarioError(f"{where}.shares: option {o.model!r} is not among the "
                                        f"tier's spec.routing.candidates {spec.candidates}")
            for j, c in enumerate(self.workload.clients):
                q = quotas[c.tenant]
                if q.spec.tier != r.tier:
                    continue
                model = c.model or (q.spec.models[0] if q.spec.models else None)
                if model != spec.reference_model:
                    raise ScenarioError(
                        f"{self.name}: workload.clients[{j}] (tenant {c.tenant}) is in routed "
                        f"tier {r.tier!r} but names {model!r}: a routed tier's clients name "
                        f"its reference model {spec.reference_model!r}")


def _scaled(model: LLMModel, k: float) -> LLMModel:
    profiles = [
        p.model_copy(
            update={
                "decode_tokens_per_second": p.decode_tokens_per_second / k,
                "max_concurrent_sequences": max(1, round(p.max_concurrent_sequences / k)),
            }
        )
        for p in model.spec.profiles
    ]
    spec = model.spec.model_copy(update={"profiles": profiles})
    return model.model_copy(update={"spec": spec})


def _shares_text(path: str, base: str | None, where: str) -> str:
    """A shares file: relative to ``base``, else shipped beside the embedded scenarios."""
    p = Path(path)
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if p.is_file():
        return p.read_text()
    shipped = resources.files("llmfleet.sim").joinpath("scenarios").joinpath(path)
    if Path(path).name == path and shipped.is_file():
        return shipped.read_text()
    raise ScenarioError(f"{where}: no such shares file {str(p)!r}")


def parse_scenario(text: str, name: str = "scenario", source_dir: str | None = None) -> Scenario:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ScenarioError(f"{name}: a scenario is a YAML mapping with workload and fleet")
    doc.setdefault("name", name)
    if source_dir is not None:
        doc.setdefault("source_dir", source_dir)
    try:
        return Scenario.model_validate(doc)
    except ValueError as e:
        raise ScenarioError(f"{name}: {e}") from e


def known_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``llmfleet/sim/scenarios/`` (``<name>.yaml``)."""
    folder = resources.files("llmfleet.sim").joinpath("scenarios")
    return sorted(f.name[: -len(".yaml")] for f in folder.iterdir()
                  if f.is_file() and f.name.endswith(".yaml"))


def load_scenario(path: Path | str | None = None) -> Scenario:
    """Load a scenario: the embedded default when ``path`` is None; else a file, or, when no
    such file exists and ``path`` is a bare name (no directory, no ``.yaml``/``.yml``), the
    embedded scenario of that name (:func:`known_scenarios`).

    A bare name that is neither is a :class:`ScenarioError` listing the embedded names; a
    missing path with a directory or a YAML suffix is a :class:`FileNotFoundError`."""
    if path is None:
        return _embedded("default")
    p = Path(path)
    bare = p.name == str(path) and p.suffix not in (".yaml", ".yml")
    if bare and not p.is_file():
        known = known_scenarios()
        if p.name not in known:
            raise ScenarioError(f"{p.name}: no such scenario file, nor an embedded scenario "
                                f"of that name (embedded: {', '.join(known)})")
        return _embedded(p.name)
    return parse_scenario(p.read_text(), p.stem, str(p.parent))


def _embedded(name: str) -> Scenario:
    text = resources.files("llmfleet.sim").joinpath(f"scenarios/{name}.yaml").read_text()
    return parse_scenario(text, name)
