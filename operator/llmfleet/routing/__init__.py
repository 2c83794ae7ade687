"""Routing: the plan's routing fractions as integer gateway weights and a JSON policy (pure)."""

from __future__ import annotations

from llmfleet.routing.table import (
    ROUTING_API_VERSION,
    RouteEntry,
    RoutingTable,
    routing_document,
    routing_json,
    routing_table,
)
from llmfleet.routing.weights import integer_weights

__all__ = [
    "ROUTING_API_VERSION",
    "RouteEntry",
    "RoutingTable",
    "integer_weights",
    "routing_document",
    "routing_json",
    "routing_table",
]
