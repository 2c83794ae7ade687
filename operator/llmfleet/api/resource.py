"""The envelope every llmfleet object shares and the CRD facts each kind declares."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from llmfleet.api.base import ObjectMeta, StatusBase, camel


@dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry: what ``kubectl get`` shows."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0
    format: str | None = None

    def as_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        if self.format:
            out["format"] = self.format
        return out


@dataclass(frozen=True)
class KindInfo:
    """CRD names and presentation of one kind."""

    kind: str
    plural: str
    singular: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("llmfleet",)
    printer_columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)


VALID_COLUMN = PrinterColumn(
    "Valid", '.status.conditions[?(@.type=="Valid")].status', description="References check out"
)
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


class Resource(BaseModel):
    """A whole Kubernetes object of an llmfleet kind: apiVersion, kind, metadata, spec, status.

    Subclasses set ``spec``/``status`` types and the ``info`` class variable.
    """

    model_config = ConfigDict(alias_generator=camel, populate_by_name=True, extra="ignore")

    info: ClassVar[KindInfo]

    api_version: Literal["llmfleet.dev/v1alpha1"] = "llmfleet.dev/v1alpha1"
    kind: str
    metadata: ObjectMeta
    spec: Any
    status: StatusBase | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @classmethod
    def new(cls, name: str, spec: Any, namespace: str | None = None, **meta: Any) -> Self:
        """Build an object, e.g. ``Region.new("eu-west", RegionSpec(...))``."""
        if cls.info.scope == "Cluster":
            namespace = None
        meta_type = cls.model_fields["metadata"].annotation
        assert isinstance(meta_type, type) and issubclass(meta_type, ObjectMeta)
        return cls(
            kind=cls.info.kind,
            metadata=meta_type(name=name, namespace=namespace, **meta),
            spec=spec,
        )

    def to_wire(self, *, with_status: bool = False) -> dict[str, Any]:
        """The JSON to send to the apiserver: camelCase, no nulls, status only on request."""
        exclude = None if with_status else {"status"}
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=exclude)

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Self:
        """Parse an object as the apiserver reads it (extra metadata is kept, ignored).

        The wire is JSON and the apiserver's types are strict, so this is too: a string is
        not a number (``"3"``), a number not a string or a boolean, an integer field takes no
        decimal point (``3.0``; the CRDs reject it as well). YAML timestamps become RFC 3339
        strings, as kubectl sends them. A ``null`` property means "omitted": the apiserver
        prunes it before defaulting and validation (a ``null`` list item it rejects), and so
        does this."""
        wire = json.dumps(without_nulls(obj, cls), default=_json_default)
        return cls.model_validate_json(wire, strict=True)


def without_nulls(value: Any, model: type[BaseModel] | None) -> Any:
    """``value`` with every ``null`` property the schema of ``model`` knows dropped, at
    every depth. A ``null`` list item stays (the apiserver rejects it), and so does an
    unknown property (the apiserver's strict decoding rejects it, ``null`` or not)."""
    if isinstance(value, list):
        return [without_nulls(v, model) for v in value]
    if not isinstance(value, dict) or model is None:
        return value
    fields: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        fields[name] = fields[info.alias or name] = info
    out = {}
    for key, item in value.items():
        known = fields.get(key)
        if known is None:
            out[key] = item
        elif item is not None:
            out[key] = without_nulls(item, _model_in(known.annotation))
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class in ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")
