"""Typed errors of actuation and publication, and the refusal to take over foreign objects.

:class:`ActuationError` is a value (never raised): what failed (``target``), where
(``region``) and on which object (``name``), with the human-readable ``message``. It *is* the
message (a ``str`` subclass: ``str(err)``, ``err == message``, ``"x" in err`` and f-strings
behave as with the plain message strings actuation returned before), so callers that only
print or compare messages keep working, and callers that need labels read the fields instead
of parsing the text.

:class:`ForeignObject` is raised (a :class:`~llmfleet.kube.client.KubeError`) when an object
of a name llmfleet generates exists but is not llmfleet's for the same identity (see
:func:`check_owned`); actuation turns it into an :class:`ActuationError` and never writes the
object.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from llmfleet.kube.client import Cluster, KubeError
from llmfleet.kube.render import owner_labels, ownership_problem

Target = Literal[
    "nodepool", "deployment", "service", "httproute", "configmap", "throttling", "other"
]
"""What an error is about (a metric label)."""

TARGETS: tuple[str, ...] = get_args(Target)

_KIND_TARGETS: dict[str, Target] = {
    "Node": "nodepool",
    "MachineDeployment": "nodepool",
    "NodePool": "nodepool",
    "Deployment": "deployment",
    "Service": "service",
    "HTTPRoute": "httproute",
    "ConfigMap": "configmap",
    "BackendTrafficPolicy": "throttling",
    "TenantQuota": "throttling",
}


def target_of(kind: str) -> Target:
    """The error target of an object kind (``other`` for kinds actuation does not own)."""
    return _KIND_TARGETS.get(kind, "other")


class ActuationError(str):
    """One actuation (or publication) failure; immutable, equal to and printed as ``message``.

    ``region`` is the Region it concerns, ``""`` when it concerns a whole cluster that serves
    several Regions (or none, e.g. the operator's own cluster); ``name`` is the object's name
    (the pool's name for a node pool, ``""`` when there is no single object).
    """

    region: str
    target: Target
    name: str

    def __new__(cls, region: str, target: Target, name: str, message: str) -> ActuationError:
        if target not in TARGETS:
            raise ValueError(f"ActuationError target {target!r} is not one of {TARGETS}")
        self = super().__new__(cls, message)
        object.__setattr__(self, "region", region)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "name", name)
        return self

    @property
    def message(self) -> str:
        return str.__str__(self)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"ActuationError is immutable (cannot set {key})")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"ActuationError is immutable (cannot delete {key})")

    def __repr__(self) -> str:
        return (
            f"ActuationError(region={self.region!r}, target={self.target!r}, "
            f"name={self.name!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActuationError, (self.region, self.target, self.name, self.message))


class ForeignObject(KubeError):
    """An object of a generated name exists and belongs to someone else (or to llmfleet for
    another model/region/pool); it is not written."""

    def __init__(self, message: str, kind: str, name: str, owner: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.owner = owner


def refuse_foreign(current: dict[str, Any] | None, desired: dict[str, Any]) -> None:
    """Raise :class:`ForeignObject` when ``current`` (the stored object of ``desired``'s name,
    None when there is none) is not llmfleet's for ``desired``'s identity."""
    if current is None:
        return
    problem = ownership_problem(current, desired)
    if problem is None:
        return
    meta = desired["metadata"]
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    raise ForeignObject(
        f"{desired['kind']} {where}: exists and {problem}; not taken over",
        desired["kind"],
        meta["name"],
        problem,
    )


def check_owned(cluster: Cluster, desired: dict[str, Any]) -> None:
    """Read the stored object of ``desired``'s name and refuse it when it is foreign (objects
    without llmfleet identity labels, e.g. apply patches of a user's MachineDeployment, are
    not checked)."""
    if not owner_labels(desired):
        return
    meta = desired["metadata"]
    current = cluster.get(
        desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace")
    )
    refuse_foreign(current, desired)
