"""Building blocks shared by every llmfleet API kind.

The pydantic models in :mod:`llmfleet.api` are the single source of truth for the
CustomResourceDefinitions in ``crds/``. Three conventions make that work:

* Field docs are attribute docstrings (``use_attribute_docstrings``); they become the
  ``description`` of each property in the generated OpenAPI schema and show up in
  ``kubectl explain``.
* Bounds (``ge``/``le``/``max_length``/``pattern``) and enums (``Literal``) are written
  on the field once; pydantic enforces them in Python and the CRD generator copies them
  into the structural schema, so the apiserver enforces the same limits.
* Cross-field rules are :class:`Rule` objects listed in a model's ``__rules__``. Each
  rule carries a CEL expression (rendered into ``x-kubernetes-validations``) *and* the
  equivalent Python predicate (checked by a pydantic model validator). One declaration,
  two enforcers; the integration tests send every bad object to both and compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

GROUP = "llmfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: A lowercase RFC 1123 label, the shape of every name llmfleet refers to.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A lowercase RFC 1123 subdomain (object names of most kinds).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

#: A reference to another llmfleet object by name (Region, LLMModel, SLATier, pool).
Name = Annotated[str, StringConstraints(max_length=63, pattern=DNS_LABEL)]


@dataclass(frozen=True)
class Rule:
    """A cross-field validation rule, enforced by the apiserver (CEL) and by pydantic.

    ``check`` receives the model instance and returns True when the object is valid.
    ``message`` is what both enforcers report; ``field_path`` (a JSONPath relative to
    the object the rule sits on, e.g. ``.minNodes``) tells the apiserver which field
    to blame so the error names it.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def camel(name: str) -> str:
    """snake_case -> camelCase, Kubernetes style: ``e2e_p95_seconds`` -> ``e2eP95Seconds``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class ApiModel(BaseModel):
    """Base of every llmfleet API structure: camelCase on the wire, strict about extras."""

    model_config = ConfigDict(
        alias_generator=camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        validate_assignment=False,
    )

    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            keys = extra.get("x-kubernetes-list-map-keys") if isinstance(extra, dict) else None
            if keys:
                _check_unique_keys(info.alias or name, getattr(self, name), [str(k) for k in keys])  # type: ignore[union-attr]
        for rule in type(self).__rules__:
            if not rule.check(self):
                where = f" ({rule.field_path.lstrip('.')})" if rule.field_path else ""
                raise ValueError(f"{rule.message}{where}")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON the apiserver stores: camelCase, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_unique_keys(field: str, items: list[Any], keys: list[str]) -> None:
    """The apiserver rejects duplicate keys in a map-list; so does pydantic."""
    seen: set[tuple[Any, ...]] = set()
    for item in items:
        wire = item.to_wire() if isinstance(item, ApiModel) else item
        key = tuple(wire.get(k) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True))
            raise ValueError(f"{field}: duplicate entry {shown}")
        seen.add(key)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of an object's current state, as in ``metav1.Condition``."""

    type: str = Field(max_length=316, pattern=r"^([a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?)$")
    """Type of the condition in CamelCase, e.g. ``Valid``, ``Applied``, ``DemandDataStale``."""
    status: ConditionStatus
    """Whether the condition holds: True, False or Unknown."""
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """A CamelCase machine-readable reason for the last transition, e.g. ``UnknownTier``."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation of the last transition."""
    last_transition_time: datetime
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` the condition was computed from."""


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ``ObjectMeta`` llmfleet reads; other fields pass through."""

    model_config = ConfigDict(alias_generator=camel, populate_by_name=True, extra="allow")

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN)
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None


class StatusBase(ApiModel):
    """Fields every llmfleet status has."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` the controller last acted on."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    """Current state of the object: ``Valid`` for every kind, plus kind-specific types."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def map_list(key: str = "name", max_items: int = 64, **kwargs: Any) -> Any:
    """A list field the apiserver treats as a map keyed by ``key`` (unique keys,
    server-side-apply merges by key)."""
    return Field(
        default_factory=list,
        max_length=max_items,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]},
        **kwargs,
    )


def set_list(max_items: int = 64, **kwargs: Any) -> Any:
    """A list of unique scalars (``x-kubernetes-list-type: set``)."""
    return Field(
        default_factory=list,
        max_length=max_items,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        **kwargs,
    )
