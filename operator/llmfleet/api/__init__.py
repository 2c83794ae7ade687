"""llmfleet's Kubernetes API (group ``llmfleet.dev``, version ``v1alpha1``).

The pydantic models here are the single source of truth for the CRDs in ``crds/``.
"""

from llmfleet.api.base import API_VERSION, GROUP, VERSION, Condition, ObjectMeta, Rule
from llmfleet.api.kinds import BY_KIND, BY_PLURAL, KINDS
from llmfleet.api.model import GPUProfile, LLMModel, LLMModelSpec, ServingRuntime
from llmfleet.api.plan import FleetPlan, FleetPlanSpec, FleetPlanStatus
from llmfleet.api.policy import FleetPolicy, FleetPolicySpec
from llmfleet.api.region import ClusterAccess, NodePool, PoolProvider, Region, RegionSpec
from llmfleet.api.resource import Resource
from llmfleet.api.tenant import ApplicationProfile, Budgets, TenantQuota, TenantQuotaSpec
from llmfleet.api.tier import SLATier, SLATierSpec

__all__ = [
    "API_VERSION",
    "BY_KIND",
    "BY_PLURAL",
    "GROUP",
    "KINDS",
    "VERSION",
    "ApplicationProfile",
    "Budgets",
    "ClusterAccess",
    "Condition",
    "FleetPlan",
    "FleetPlanSpec",
    "FleetPlanStatus",
    "FleetPolicy",
    "FleetPolicySpec",
    "GPUProfile",
    "LLMModel",
    "LLMModelSpec",
    "NodePool",
    "ObjectMeta",
    "PoolProvider",
    "Region",
    "RegionSpec",
    "Resource",
    "Rule",
    "SLATier",
    "SLATierSpec",
    "ServingRuntime",
    "TenantQuota",
    "TenantQuotaSpec",
]
