"""``TenantQuota``: one tenant's tier, fair-share weight, budgets and traffic profile."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmfleet.api.base import ApiModel, Name, Rule, StatusBase, map_list, set_list
from llmfleet.api.resource import AGE_COLUMN, VALID_COLUMN, KindInfo, PrinterColumn, Resource

#: A tenant id as the gateway sends it in the tenant header (and label values allow).
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Budgets(ApiModel):
    """Limits on what the tenant may send; ``guaranteed*`` is reserved for it."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.guaranteedTokensPerMinute) || !has(self.tokensPerMinute) || "
            "self.guaranteedTokensPerMinute <= self.tokensPerMinute",
            message="guaranteedTokensPerMinute must be <= tokensPerMinute",
            check=lambda s: (
                s.guaranteed_tokens_per_minute is None
                or s.tokens_per_minute is None
                or s.guaranteed_tokens_per_minute <= s.tokens_per_minute
            ),
            field_path=".guaranteedTokensPerMinute",
        ),
    )

    tokens_per_minute: int | None = Field(default=None, ge=1, le=10**12)
    """Most tokens (input + output) per minute; absent means no cap beyond fair share."""
    guaranteed_tokens_per_minute: int | None = Field(default=None, ge=0, le=10**12)
    """Tokens per minute always available to the tenant; the planner reserves capacity
    for the sum of guarantees in each tier."""
    requests_per_minute: int | None = Field(default=None, ge=1, le=10**9)
    """Most requests per minute."""
    max_concurrency: int | None = Field(default=None, ge=1, le=10**6)
    """Most requests in flight at once."""


class ApplicationProfile(ApiModel):
    """What a typical interaction of the tenant's application looks like (FairServe's
    normalisation of service by expected token profile)."""

    mean_input_tokens: float = Field(default=1000, ge=0, le=10**7)
    """Mean user-supplied prompt tokens per LLM call."""
    mean_system_tokens: float = Field(default=0, ge=0, le=10**7)
    """Mean system-prompt tokens per LLM call."""
    mean_output_tokens: float = Field(default=250, ge=0, le=10**6)
    """Mean generated tokens per LLM call."""
    calls_per_interaction: float = Field(default=1, ge=1, le=1000)
    """Mean LLM calls one user interaction makes (agentic applications make several)."""


class OriginShare(ApiModel):
    """Share of the tenant's traffic that originates in a region."""

    region: Name
    """Name of the Region the traffic comes from."""
    fraction: float = Field(ge=0, le=1)
    """Share of the tenant's requests (all fractions sum to 1)."""


class TenantQuotaSpec(ApiModel):
    """Desired state of a TenantQuota."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.origins) || size(self.origins) == 0 || "
            "(self.origins.map(o, o.fraction).sum() > 0.999 && "
            "self.origins.map(o, o.fraction).sum() < 1.001)",
            message="origins fractions must sum to 1",
            check=lambda s: not s.origins or abs(sum(o.fraction for o in s.origins) - 1) < 0.001,
            field_path=".origins",
        ),
    )

    tenant_id: str = Field(min_length=1, max_length=128, pattern=TENANT_ID_PATTERN)
    """Tenant identifier as sent by the gateway in the tenant header."""
    tier: Name
    """Name of the SLATier the tenant's traffic is served at."""
    models: list[Name] = set_list(max_items=64)
    """LLMModel names the tenant may call; empty means every model."""
    weight: float = Field(default=1.0, gt=0, le=1000)
    """Fair-share weight: under contention a tenant gets capacity in proportion to it."""
    budgets: Budgets = Field(default_factory=Budgets)
    """Rate and concurrency budgets."""
    application: ApplicationProfile = Field(default_factory=ApplicationProfile)
    """Token profile of the tenant's application."""
    origins: list[OriginShare] = map_list(key="region", max_items=32)
    """Where the tenant's traffic comes from; empty means spread evenly over Regions."""


class TenantLimits(ApiModel):
    """Limits currently enforced for the tenant (written by the controller)."""

    tokens_per_second: float = Field(ge=0)
    """Token rate limit, tokens/s."""
    requests_per_second: float = Field(ge=0)
    """Request rate limit, requests/s."""
    burst_tokens: float = Field(ge=0)
    """Token bucket depth, tokens."""
    max_concurrency: int = Field(ge=0)
    """Most requests in flight."""


class TenantQuotaStatus(StatusBase):
    """Observed state of a TenantQuota."""

    limits: TenantLimits | None = None
    """Limits currently published to the ingress."""
    usage_tokens_per_second: float | None = Field(default=None, ge=0)
    """Recent token usage, tokens/s."""
    throttled: bool | None = None
    """Whether the tenant is being throttled now."""


class TenantQuota(Resource):
    """A tenant's quota and traffic profile."""

    info: ClassVar[KindInfo] = KindInfo(
        kind="TenantQuota",
        plural="tenantquotas",
        singular="tenantquota",
        scope="Namespaced",
        short_names=("tq",),
        printer_columns=(
            PrinterColumn("Tenant", ".spec.tenantId"),
            PrinterColumn("Tier", ".spec.tier"),
            PrinterColumn("Weight", ".spec.weight", "number"),
            PrinterColumn("TPM", ".spec.budgets.tokensPerMinute", "integer", "Token budget"),
            PrinterColumn("Limit-tok/s", ".status.limits.tokensPerSecond", "number"),
            VALID_COLUMN,
            AGE_COLUMN,
        ),
    )

    kind: Literal["TenantQuota"] = "TenantQuota"
    spec: TenantQuotaSpec
    status: TenantQuotaStatus | None = None
