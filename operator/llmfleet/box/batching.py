"""One replica's continuous batching in real time (pure: the caller passes the clock).

The model is the twin's (:mod:`llmfleet.sim.engine`, module docstring): a replica holds at
most ``C`` sequences; admitted prompts are prefilled one at a time, FIFO, at ``P`` tokens/s,
and decoding pauses while a prefill runs; with ``n`` sequences decoding each advances at

    r(n) = D / max(n, s C)        tokens/s

(``s`` the saturation fraction), so an unloaded request sees

    TTFT = L_in / P + k s C / D,        e2e = L_in / P + L_out s C / D   (s C >= 1)

and at saturation a request costs ``L_in / P + L_out / D`` of replica time. The first
token is emitted when the prefill ends (plus ``k s C / D``, latency only); it is the first
of the ``L_out`` tokens the decode then completes. All decoding sequences share one rate,
so the batcher keeps a virtual progress ``V`` (tokens each decoding sequence has made) and
finish marks ``V_start + L_out``, as the twin does.

:meth:`Batcher.advance` moves the replica to ``now`` and returns what happened, in time
order: :class:`Tokens` (a sequence's newly emitted tokens, the first one carrying its
TTFT) and :class:`Finished`. :meth:`Batcher.next_event` says when the next one is due.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from llmfleet.api.model import GPUProfile

DEFAULT_SATURATION = 0.25
"""The twin's default ``engine.saturationFraction`` (:class:`llmfleet.sim.scenario.EngineSpec`)."""


@dataclass(frozen=True)
class ReplicaProfile:
    """How fast one replica is (an LLMModel's :class:`GPUProfile` plus the twin's knobs)."""

    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    max_concurrent_sequences: int
    saturation_fraction: float = DEFAULT_SATURATION
    first_token_steps: float = 0.0
    kv_cache_tokens: int = 0
    """KV-cache capacity in tokens; 0: ``max_concurrent_sequences x 2048``."""

    def __post_init__(self) -> None:
        for name in ("prefill_tokens_per_second", "decode_tokens_per_second"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        if self.max_concurrent_sequences < 1:
            raise ValueError("max_concurrent_sequences must be >= 1")
        if not 0 < self.saturation_fraction <= 1:
            raise ValueError("saturation_fraction must be in (0, 1]")
        if self.first_token_steps < 0 or self.kv_cache_tokens < 0:
            raise ValueError("first_token_steps and kv_cache_tokens must be >= 0")

    @classmethod
    def from_gpu_profile(
        cls, p: GPUProfile, *, saturation_fraction: float = DEFAULT_SATURATION,
        first_token_steps: float = 0.0,
    ) -> ReplicaProfile:  # fmt: skip
        return cls(
            p.prefill_tokens_per_second,
            p.decode_tokens_per_second,
            p.max_concurrent_sequences,
            saturation_fraction,
            first_token_steps,
        )

    @property
    def knee(self) -> float:
        """``s C``: the batch size from which decode throughput is ``D``."""
        return self.saturation_fraction * self.max_concurrent_sequences

    @property
    def first_token_delay(self) -> float:
        """``k s C / D`` seconds (the twin's ``Profile.first_token_delay``)."""
        return self.first_token_steps * self.knee / self.decode_tokens_per_second

    @property
    def kv_capacity(self) -> int:
        return self.kv_cache_tokens or self.max_concurrent_sequences * 2048

    def decode_rate(self, n: int) -> float:
        """Tokens/s of each of ``n`` decoding sequences."""
        return self.decode_tokens_per_second / max(n, self.knee, 1e-9)

    def unloaded_ttft(self, prompt_tokens: int) -> float:
        return prompt_tokens / self.prefill_tokens_per_second + self.first_token_delay

    def unloaded_e2e(self, prompt_tokens: int, output_tokens: int) -> float:
        return prompt_tokens / self.prefill_tokens_per_second + output_tokens / self.decode_rate(1)


@dataclass(frozen=True)
class Tokens:
    """``count`` more tokens of request ``rid`` at ``time`` (``first``: the first ones)."""

    rid: int
    count: int
    time: float
    first: bool


@dataclass(frozen=True)
class Finished:
    """Request ``rid`` finished at ``time`` (``reason``: vLLM's ``finished_reason``)."""

    rid: int
    time: float
    reason: str
    prompt_tokens: int
    output_tokens: int
    arrival: float
    first_token: float


Event = Tokens | Finished


@dataclass(eq=False)
class _Seq:
    rid: int
    prompt: int
    output: int
    arrival: float
    v_start: float = 0.0
    first_token: float = math.nan
    emitted: int = 0


@dataclass
class Batcher:
    """The replica's state; every method takes the time (seconds, any monotonic clock)."""

    profile: ReplicaProfile
    waiting: deque[_Seq] = field(default_factory=deque)
    prefill_q: deque[_Seq] = field(default_factory=deque)
    prefilling: _Seq | None = None
    prefill_end: float = 0.0
    decoding: dict[int, _Seq] = field(default_factory=dict)
    _marks: list[tuple[float, int]] = field(default_factory=list)
    v: float = 0.0
    v_time: float = 0.0

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> int:
        """Admitted sequences (vLLM's ``num_requests_running``)."""
        return len(self.prefill_q) + (self.prefilling is not None) + len(self.decoding)

    @property
    def queued(self) -> int:
        """Sequences waiting for a slot (vLLM's ``num_requests_waiting``)."""
        return len(self.waiting)

    def kv_cache_usage(self) -> float:
        """Tokens held by admitted sequences over the KV capacity, 0..1."""
        held: float = sum(s.prompt for s in self.prefill_q)
        if self.prefilling is not None:
            held += self.prefilling.prompt
        held += sum(s.prompt + min(s.output, self.v - s.v_start) for s in self.decoding.values())
        return min(1.0, held / self.profile.kv_capacity)

    # ------------------------------------------------------------------ input
    def submit(self, rid: int, prompt_tokens: int, output_tokens: int, now: float) -> list[Event]:
        """A new request at ``now``; returns what happened up to ``now`` (call order)."""
        if prompt_tokens < 0 or output_tokens < 1:
            raise ValueError("a request needs prompt_tokens >= 0 and output_tokens >= 1")
        events = self.advance(now)
        self.waiting.append(_Seq(rid, prompt_tokens, output_tokens, now))
        self._admit(now)
        return events + self._events_at(now)

    def cancel(self, rid: int, now: float) -> list[Event]:
        """Drop request ``rid`` (its client went away) wherever it is."""
        events = self.advance(now)
        for q in (self.waiting, self.prefill_q):
            for s in list(q):
                if s.rid == rid:
                    q.remove(s)
        if self.prefilling is not None and self.prefilling.rid == rid:
            self.prefilling = None
            self._start_prefill(now)
        if rid in self.decoding:
            del self.decoding[rid]
            self._marks = [(m, r) for m, r in self._marks if r != rid]
            heapq.heapify(self._marks)
        self._admit(now)
        return events

    # ------------------------------------------------------------------ time
    def _rate(self) -> float:
        return self.profile.decode_rate(len(self.decoding))

    def _structural(self) -> float | None:
        """Time of the next prefill end or completion (None: nothing scheduled)."""
        if self.prefilling is not None:
            return self.prefill_end
        if self._marks:
            return self.v_time + max(0.0, self._marks[0][0] - self.v) / self._rate()
        return None

    def next_event(self) -> float | None:
        """When the next token or state change is due (None: idle)."""
        t = self._structural()
        if self.decoding and self.prefilling is None:
            due = min(
                s.v_start + s.emitted + 1 - self.v for s in self.decoding.values()
            )  # progress to the next token of any sequence
            tok = self.v_time + max(0.0, due) / self._rate()
            t = tok if t is None else min(t, tok)
        firsts = [s.first_token for s in self.decoding.values() if s.emitted == 0]
        if firsts:
            t = min(firsts) if t is None else min(t, *firsts)
        return t

    def _move_to(self, t: float) -> None:
        if self.prefilling is None and self.decoding:
            self.v += (t - self.v_time) * self._rate()
        self.v_time = t

    def advance(self, now: float) -> list[Event]:
        out: list[Event] = []
        while (t := self._structural()) is not None and t <= now:
            self._move_to(t)
            if self.prefilling is not None:
                s, self.prefilling = self.prefilling, None
                s.v_start = self.v
                s.first_token = t + self.profile.first_token_delay
                self.decoding[s.rid] = s
                heapq.heappush(self._marks, (s.v_start + s.output, s.rid))
                self._start_prefill(t)
            else:
                _, rid = heapq.heappop(self._marks)
                s = self.decoding.pop(rid)
                out += self._emit(s, s.output, t)
                out.append(Finished(rid, t, "length", s.prompt, s.output, s.arrival, s.first_token))
                self._admit(t)
            out += self._events_at(t)
        if now > self.v_time:
            self._move_to(now)
        return out + self._events_at(now)

    def _events_at(self, t: float) -> list[Event]:
        out: list[Event] = []
        for s in self.decoding.values():
            if s.first_token > t + 1e-12:
                continue
            due = min(s.output, max(1, math.floor(self.v - s.v_start + 1e-9)))
            out += self._emit(s, due, t)
        return out

    def _emit(self, s: _Seq, upto: int, t: float) -> list[Event]:
        if upto <= s.emitted:
            return []
        first = s.emitted == 0
        n, s.emitted = upto - s.emitted, upto
        return [Tokens(s.rid, n, max(t, s.first_token) if first else t, first)]

    def _admit(self, now: float) -> None:
        while self.waiting and self.running < self.profile.max_concurrent_sequences:
            self.prefill_q.append(self.waiting.popleft())
        if self.prefilling is None:
            self._start_prefill(now)

    def _start_prefill(self, now: float) -> None:
        if self.prefilling is None and self.prefill_q:
            self._move_to(now)  # decoding ran until now
            self.prefilling = self.prefill_q.popleft()
            self.prefill_end = now + self.prefilling.prompt / self.profile.prefill_tokens_per_second
