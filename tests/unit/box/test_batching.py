"""The emulator's replica (pure): the twin's continuous-batching model in real time."""

from __future__ import annotations

import pytest

from llmfleet.box.batching import Batcher, Event, Finished, ReplicaProfile, Tokens

P = ReplicaProfile(
    prefill_tokens_per_second=1000.0, decode_tokens_per_second=400.0,
    max_concurrent_sequences=8, saturation_fraction=0.25,
)  # fmt: skip


def _drain(b: Batcher, events: list[Event]) -> list[Event]:
    while (t := b.next_event()) is not None:
        events += b.advance(t)
    return events


def test_one_request_meets_the_analytic_ttft_and_e2e() -> None:
    b = Batcher(P)
    out = _drain(b, b.submit(1, 200, 30, 0.0))
    toks = [e for e in out if isinstance(e, Tokens)]
    (fin,) = [e for e in out if isinstance(e, Finished)]
    assert toks[0].first and toks[0].time == pytest.approx(P.unloaded_ttft(200)) == 0.2
    # one sequence decodes at D / (s C) = 200 tokens/s
    assert fin.time == pytest.approx(P.unloaded_e2e(200, 30)) == pytest.approx(0.2 + 30 / 200)
    assert sum(e.count for e in toks) == 30 and fin.reason == "length"
    assert (b.running, b.queued) == (0, 0)


def test_first_token_steps_delay_only_the_first_token() -> None:
    p = ReplicaProfile(1000.0, 400.0, 8, 0.25, first_token_steps=1.0)
    b = Batcher(p)
    out = _drain(b, b.submit(1, 100, 10, 0.0))
    first = next(e for e in out if isinstance(e, Tokens))
    assert first.time == pytest.approx(0.1 + 2 / 400)  # k s C / D
    fin = next(e for e in out if isinstance(e, Finished))
    assert fin.time == pytest.approx(0.1 + 10 / 200)  # the decode work is unchanged


def test_prefills_are_fifo_and_pause_decoding() -> None:
    b = Batcher(P)
    events = b.submit(1, 100, 10, 0.0) + b.submit(2, 100, 10, 0.0)
    out = _drain(b, events)
    firsts = {e.rid: e.time for e in out if isinstance(e, Tokens) and e.first}
    assert firsts == {1: pytest.approx(0.1), 2: pytest.approx(0.2)}
    fin = {e.rid: e.time for e in out if isinstance(e, Finished)}
    # request 1 decoded nothing while 2 prefilled; then two sequences at 200 tok/s each
    assert fin[1] == pytest.approx(0.2 + 10 / 200)


def test_at_saturation_throughput_is_the_profile_decode_rate() -> None:
    b = Batcher(P)
    events: list[Event] = []
    for i in range(8):  # C sequences, tiny prompts
        events += b.submit(i, 0, 400, 0.0)
    assert b.running == 8
    out = _drain(b, events)
    end = max(e.time for e in out if isinstance(e, Finished))
    assert 8 * 400 / end == pytest.approx(P.decode_tokens_per_second)


def test_beyond_max_seqs_requests_wait_and_count_as_waiting() -> None:
    b = Batcher(P)
    for i in range(10):
        b.submit(i, 10, 5, 0.0)
    assert (b.running, b.queued) == (8, 2)
    assert 0 < b.kv_cache_usage() <= 1
    out = _drain(b, [])
    assert sorted(e.rid for e in out if isinstance(e, Finished)) == list(range(10))
    assert (b.running, b.queued) == (0, 0)


def test_a_cancelled_request_frees_its_slot_and_never_finishes() -> None:
    b = Batcher(ReplicaProfile(1000.0, 400.0, 1, 1.0))
    b.submit(1, 100, 100, 0.0)
    b.submit(2, 100, 1, 0.0)
    assert b.queued == 1
    b.cancel(1, 0.05)
    assert (b.running, b.queued) == (1, 0)
    out = _drain(b, [])
    assert [e.rid for e in out if isinstance(e, Finished)] == [2]
    with pytest.raises(ValueError, match="output_tokens >= 1"):
        b.submit(3, 1, 0, 1.0)
    with pytest.raises(ValueError, match="decode_tokens_per_second"):
        ReplicaProfile(1.0, 0.0, 1)
