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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

GROUP = "llmfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: A lowercase RFC 1123 label, the shape of every name llmfleet refers to.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A lowercase RFC 1123 subdomain (object names of most kinds).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

#: Kubernetes' ``IsEnvVarName``: C_IDENTIFIER plus ``-`` and ``.``.
ENV_VAR_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
#: The key of a Secret or ConfigMap's data (Kubernetes' ``IsConfigMapKey``).
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
#: An HTTP header name (an RFC 9110 token).
HTTP_HEADER_NAME = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"

#: A reference to another llmfleet object by name (Region, LLMModel, SLATier, pool). Such
#: names become parts of other objects' names and label values, so they are RFC 1123
#: labels of at most 63 characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
#: The name of a Kubernetes object of most kinds (Secret, ConfigMap, Gateway, ...).
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
#: A namespace name.
NamespaceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]


#: The time of an RFC 3339 ``date-time`` as the apiserver's format check reads it
#: (kube-openapi ``strfmt.IsDateTime``): ``HH:MM:SS[.fraction](Z|±HH:MM)``.
_K8S_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))")
_K8S_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def is_k8s_date_time(text: str) -> bool:
    """Whether the apiserver takes ``text`` for a ``format: date-time`` field."""
    parts = text.lower().split("t")
    if len(text) < 4 or len(parts) < 2 or not _K8S_DATE.fullmatch(parts[0]):
        return False
    try:
        date.fromisoformat(parts[0])
    except ValueError:
        return False
    m = _K8S_TIME.fullmatch(parts[1])
    return m is not None and m[1] <= "23" and m[2] <= "59" and m[3] <= "59"


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a datetime passes; anything else fails the (strict) datetime check
    if not is_k8s_date_time(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-01-01T00:00:00Z")
    return datetime.fromisoformat(value.upper())


#: A point in time, written as an RFC 3339 ``date-time`` on the wire (what the CRD's
#: ``format: date-time`` accepts; pydantic alone would also take ``"3"`` as a Unix time).
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


def cel_or_default(path: str, default: bool | float | str) -> str:
    """CEL for the value at ``path`` (e.g. ``self.horizon.steps``), or ``default`` when the
    field is omitted: the apiserver does not fill defaults of omitted *objects*, and a rule
    that reads an absent field fails with ``no such key``. Every optional field a rule reads
    goes through this (or an explicit ``has()``)."""
    if isinstance(default, bool):
        literal = "true" if default else "false"
    elif isinstance(default, str):
        literal = "'" + default.replace("\\", "\\\\").replace("'", "\\'") + "'"
    elif isinstance(default, int):
        literal = str(default)
    else:
        literal = repr(float(default))
    return f"(has({path}) ? {path} : {literal})"


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


def rules_schema(*rules: Rule) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules on a scalar field (``self`` is the value)."""
    return {"x-kubernetes-validations": [r.as_schema() for r in rules]}


def rules_check(*rules: Rule) -> Callable[[str], str]:
    """The pydantic side of :func:`rules_schema`: an ``AfterValidator`` running the same
    rules' predicates on the value."""

    def check(value: str) -> str:
        for rule in rules:
            if not rule.check(value):
                raise ValueError(rule.message)
        return value

    return check


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
            if not isinstance(extra, dict):
                continue
            keys = extra.get("x-kubernetes-list-map-keys")
            if isinstance(keys, list):
                _check_unique_keys(info.alias or name, getattr(self, name), [str(k) for k in keys])
            elif extra.get("x-kubernetes-list-type") == "set":
                _check_unique_items(info.alias or name, getattr(self, name))
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


def _check_unique_items(field: str, items: Sequence[Any]) -> None:
    """A set-list holds each value once (the apiserver says ``Duplicate value``)."""
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{field}: duplicate entry {item!r}")
        seen.add(item)


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
    last_transition_time: Timestamp
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The ``metadata.generation`` the condition was computed from."""


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ``ObjectMeta`` llmfleet reads; other fields pass through."""

    model_config = ConfigDict(alias_generator=camel, populate_by_name=True, extra="allow")

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of the object: an RFC 1123 subdomain of at most 253 characters.",
    )
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None


class LabelNamedMeta(ObjectMeta):
    """``metadata`` of a kind whose name becomes part of other objects' names and of label
    values (Deployments ``<model>-<region>-<pool>``, Nodes, label ``llmfleet.dev/model``):
    an RFC 1123 label of at most 63 characters, no dots."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the object: an RFC 1123 label (lowercase letters, digits and "
        "'-', no dots) of at most 63 characters; it becomes part of other objects' names "
        "and of label values.",
    )


#: Room a FleetPolicy's name leaves for the ``-YYYYmmddHHMMSS`` of its FleetPlans' names.
PLAN_NAME_SUFFIX = 15


class PolicyNamedMeta(ObjectMeta):
    """``metadata`` of a FleetPolicy: its FleetPlans are named ``<policy>-<YYYYmmddHHMMSS>``
    and carry the policy's name in ``spec.policy``; an RFC 1123 label short enough that the
    plan names are labels too (63 - 15 = 48 characters)."""

    name: str = Field(
        min_length=1,
        max_length=63 - PLAN_NAME_SUFFIX,
        pattern=DNS_LABEL,
        description="Name of the policy: an RFC 1123 label of at most 48 characters, so "
        "that its FleetPlans' names (<policy>-<YYYYmmddHHMMSS>) are labels too.",
    )


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
