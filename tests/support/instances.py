"""Seeded planning instances for the planner's tests: the benchmark's fleet generator.

One copy, :mod:`llmfleet_bench.fleets`, installed with the package so that
``llmfleet bench planner`` runs without the tests; re-exported here so tests take their
fixtures from ``support``.
"""

from __future__ import annotations

from llmfleet_bench.fleets import generate, rolled

__all__ = ["generate", "rolled"]
