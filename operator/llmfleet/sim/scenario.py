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
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from llmfleet.api.loading import parse_object, snapshot_of
from llmfleet.api.model import LLMModel
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource


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


class Scenario(BaseModel):
    """A parsed scenario: workload, engine settings and the fleet objects (raw documents)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "scenario"
    workload: WorkloadSpec
    engine: EngineSpec = Field(default_factory=EngineSpec)
    fleet: list[dict[str, Any]] = Field(min_length=1)

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
        return snap


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


def parse_scenario(text: str, name: str = "scenario") -> Scenario:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ScenarioError(f"{name}: a scenario is a YAML mapping with workload and fleet")
    doc.setdefault("name", name)
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
    return parse_scenario(p.read_text(), p.stem)


def _embedded(name: str) -> Scenario:
    text = resources.files("llmfleet.sim").joinpath(f"scenarios/{name}.yaml").read_text()
    return parse_scenario(text, name)
