"""The plan's routing on the box without a gateway: where the load generator sends each
request when no Gateway API data plane runs (Traefik is optional on the box).

The operator publishes its routing policy in the ConfigMap ``llmfleet-routing``
(``routing.json``, :func:`llmfleet.routing.routing_document`: per model, per origin and
tier, an integer weight per serving region); a gateway honours it through the HTTPRoutes.
:func:`pick` (pure) does the gateway's part for one request: the route of (model, origin,
tier) -- else the origin's routes of any tier, else the model's, weights summed -- and a serving region drawn
by weight with ``u`` in [0, 1). :class:`RouteFollower` (I/O) keeps the newest document and
the Services' ClusterIPs, read every ``period`` seconds, and answers
:meth:`RouteFollower.url` with the base URL of (model, region)'s Service.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from llmfleet.kube.client import KubeError
from llmfleet.kube.render import LABEL_MODEL, LABEL_REGION

log = logging.getLogger("llmfleet.box.routes")

ROUTING_CONFIG_MAP = "llmfleet-routing"
ROUTING_KEY = "routing.json"


def weights_for(doc: Mapping[str, Any], model: str, origin: str, tier: str) -> dict[str, int]:
    """The serving regions' weights for (model, origin, tier) in a routing document: the
    tier's route of that origin, else every route of the origin summed, else every route of
    the model summed (a gateway's default route of the model); {} when the model has none."""
    routes = ((doc.get("models") or {}).get(model) or {}).get("routes") or []
    exact = [r for r in routes if r.get("origin") == origin and r.get("tier") == tier]
    chosen = exact or [r for r in routes if r.get("origin") == origin] or list(routes)
    out: dict[str, int] = {}
    for r in chosen:
        for region, w in (r.get("weights") or {}).items():
            if isinstance(w, int | float) and w > 0:
                out[str(region)] = out.get(str(region), 0) + int(w)
    return out


def pick(weights: Mapping[str, int], u: float) -> str | None:
    """The region ``u`` (in [0, 1)) falls on, regions in name order by weight; None: none."""
    total = sum(weights.values())
    if total <= 0:
        return None
    x = u * total
    for region in sorted(weights):
        x -= weights[region]
        if x < 0:
            return region
    return sorted(weights)[-1]


class _Reader(Protocol):
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any: ...

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class RoutingView:
    """One read of the routing document and the Services."""

    document: Mapping[str, Any]
    services: Mapping[tuple[str, str], str]
    """(model label, region label) -> ``http://ClusterIP:port``."""


class RouteFollower(threading.Thread):
    """Reads the routing ConfigMap and the model Services of ``namespace`` every ``period``
    seconds (a failed read keeps the last view, and says so in :attr:`problem`)."""

    def __init__(self, cluster: _Reader, namespace: str, period: float = 1.0) -> None:
        super().__init__(name="route-follower", daemon=True)
        self._cluster = cluster
        self._ns = namespace
        self._period = period
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._view = RoutingView({}, {})
        self.problem: str | None = None

    def read_once(self) -> RoutingView:
        cm = self._cluster.get("v1", "ConfigMap", ROUTING_CONFIG_MAP, self._ns) or {}
        text = (cm.get("data") or {}).get(ROUTING_KEY)
        doc = json.loads(text) if text else {}
        services: dict[tuple[str, str], str] = {}
        for svc in self._cluster.list("v1", "Service", self._ns, label_selector=LABEL_MODEL):
            labels = (svc.get("metadata") or {}).get("labels") or {}
            spec = svc.get("spec") or {}
            ports = spec.get("ports") or []
            if LABEL_REGION in labels and spec.get("clusterIP") and ports:
                key = (labels[LABEL_MODEL], labels[LABEL_REGION])
                services[key] = f"http://{spec['clusterIP']}:{ports[0]['port']}"
        view = RoutingView(doc, services)
        with self._lock:
            self._view = view
        return view

    def view(self) -> RoutingView:
        with self._lock:
            return self._view

    def url(self, model: str, origin: str, tier: str, u: float) -> tuple[str, str] | None:
        """(serving region, base URL) for one request; None: no route or no Service."""
        v = self.view()
        region = pick(weights_for(v.document, model, origin, tier), u)
        if region is None:
            return None
        base = v.services.get((model, region))
        return None if base is None else (region, base)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.read_once()
                self.problem = None
            except (KubeError, OSError, ValueError, KeyError) as err:  # the last view stays
                self.problem = f"{type(err).__name__}: {err}"
                log.warning("routing not read: %s", self.problem)
            self._stop.wait(self._period)
