"""The per-replica scheduling hook: which waiting request a replica admits next.

A replica of the simulator (and, in principle, a gateway in front of a real replica) keeps
the requests routed to it in a waiting set. Whenever it has a free sequence slot it asks its
:class:`Scheduler` which request to admit; as it serves tokens it reports them back, so
token-counting schedulers (VTC, FairServe's weighted service counter) can keep their
counters. A scheduler may also *throttle*: refuse a request at arrival (``on_arrival``
returns a reason) — the replica then rejects it with that reason.

The engine's contract, in the order calls happen for one request ``r``:

1. ``on_arrival(r, now)`` when ``r`` reaches the replica; ``None`` means "queue it",
   a string means "reject it, for this reason" (e.g. ``"rpm-limit"``).
2. ``pick(waiting, now)`` whenever a slot is free and ``waiting`` (arrival order) is not
   empty; returns the request to admit, or ``None`` to leave the slot idle (a
   work-conserving scheduler returns ``None`` only when ``waiting`` is empty).
3. ``on_service(r, prompt_tokens, output_tokens, now)`` for tokens served since the last
   report (prefill counts as prompt tokens, decode as output tokens); called at least once
   at admission (the prompt) and once at completion.
4. ``on_finish(r, now)`` when ``r`` completes, or is dropped (spot loss, cancellation).

Schedulers are plain objects with state; one instance per replica (or one shared by all
replicas of a gateway, for global counters). No I/O, no clocks: time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class RequestView(Protocol):
    """What a scheduler may know about a request (the simulator's Request satisfies it)."""

    @property
    def id(self) -> int: ...
    @property
    def tenant(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def arrival(self) -> float:
        """Seconds since the scenario start."""
        ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int:
        """Tokens the request will generate (known to the simulator; a live scheduler would
        use an estimate: its application's expected output)."""
        ...
    @property
    def interaction(self) -> int:
        """Id of the multi-call interaction (agentic session) this call belongs to; unique
        per request for single-call applications."""
        ...
    @property
    def call_index(self) -> int:
        """0 for the first call of an interaction, 1, 2, ... for the later ones."""
        ...


class Scheduler(Protocol):
    """Admission and ordering at one replica (see the module docstring for the contract)."""

    name: str

    def on_arrival(self, request: RequestView, now: float) -> str | None: ...

    def pick(self, waiting: Sequence[RequestView], now: float) -> RequestView | None: ...

    def on_service(
        self, request: RequestView, prompt_tokens: float, output_tokens: float, now: float
    ) -> None: ...

    def on_finish(self, request: RequestView, now: float) -> None: ...


class FCFS:
    """First come, first served: admit the oldest waiting request; never throttle."""

    name = "fcfs"

    def on_arrival(self, request: RequestView, now: float) -> str | None:
        return None

    def pick(self, waiting: Sequence[RequestView], now: float) -> RequestView | None:
        return waiting[0] if waiting else None

    def on_service(
        self, request: RequestView, prompt_tokens: float, output_tokens: float, now: float
    ) -> None:
        return None

    def on_finish(self, request: RequestView, now: float) -> None:
        return None
