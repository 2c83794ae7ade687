"""Every llmfleet kind, in dependency order."""

from __future__ import annotations

from llmfleet.api.model import LLMModel
from llmfleet.api.plan import FleetPlan
from llmfleet.api.policy import FleetPolicy
from llmfleet.api.region import Region
from llmfleet.api.resource import Resource
from llmfleet.api.tenant import TenantQuota
from llmfleet.api.tier import SLATier

KINDS: tuple[type[Resource], ...] = (Region, LLMModel, SLATier, TenantQuota, FleetPolicy, FleetPlan)
BY_KIND: dict[str, type[Resource]] = {k.info.kind: k for k in KINDS}
BY_PLURAL: dict[str, type[Resource]] = {k.info.plural: k for k in KINDS}
