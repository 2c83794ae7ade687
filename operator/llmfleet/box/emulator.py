"""A vLLM emulator: one aiohttp app per model replica, OpenAI-compatible, real time.

Endpoints (as vLLM's OpenAI server): ``POST /v1/completions`` and
``POST /v1/chat/completions`` (``stream: true``: server-sent events, one chunk per emission,
then a usage chunk with ``choices: []`` unless ``stream_options.include_usage`` is false,
then ``data: [DONE]``; non-streaming: one JSON with ``usage``), ``GET /v1/models``,
``GET /health``, ``GET /metrics`` (:class:`llmfleet.box.metrics.VllmMetrics`).

The replica is :class:`llmfleet.box.batching.Batcher` driven by the event loop's clock:
a stepping task wakes at the batcher's next event (no sooner than ``tick_seconds`` after the
last wake, so a large batch emits several tokens per chunk) and hands each request its
tokens. Tokens are dummy text: a prompt's token count is its whitespace-separated words
(chat: of every message's content); the output is exactly ``max_tokens`` tokens
(``finish_reason: length``; default 16, vLLM's default for completions).

What a client sees besides 200: 400 (not JSON, a field of the wrong type or out of range,
naming the field), 404 (another model), 503 (``max_waiting`` requests already queued).
A client that goes away is cancelled in the batcher and counted as
``vllm:request_success_total{finished_reason="abort"}``.

CLI: ``python -m llmfleet.box.emulator --model NAME --prefill P --decode D --max-seqs C
--port N [--replicas R]`` or ``--llmmodel FILE --gpu-type T`` to read an LLMModel's profile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from llmfleet.api.model import LLMModel
from llmfleet.box.batching import (
    DEFAULT_SATURATION,
    Batcher,
    Event,
    Finished,
    ReplicaProfile,
    Tokens,
)
from llmfleet.box.metrics import VllmMetrics

TOKEN_TEXT = " tok"
MAX_TOKENS_LIMIT = 1_000_000


@dataclass(frozen=True)
class EmulatorConfig:
    """One emulated replica."""

    served_name: str
    profile: ReplicaProfile
    model_aliases: tuple[str, ...] = ()
    """Other names the ``model`` field may carry (e.g. the LLMModel's name)."""
    max_waiting: int = 1024
    default_max_tokens: int = 16
    tick_seconds: float = 0.005
    engine: str = "0"


class BadRequest(ValueError):
    """A request field that is missing, of the wrong type or out of range."""

    def __init__(self, field: str, problem: str, status: int = 400) -> None:
        self.field, self.problem, self.status = field, problem, status
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class Parsed:
    """What the emulator needs of an OpenAI request."""

    chat: bool
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool


def count_tokens(text: str) -> int:
    """The dummy tokenizer: whitespace-separated words."""
    return len(text.split())


def _content_text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise BadRequest(f"{where}[{i}]", "expected {type: text, text: string}")
            parts.append(part.get("text", ""))
        return " ".join(parts)
    if content is None:
        return ""
    raise BadRequest(where, "expected a string or a list of content parts")


def parse_request(body: object, chat: bool, cfg: EmulatorConfig) -> Parsed:
    """Validate an OpenAI request body (pure); raises :class:`BadRequest` naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("body", "expected a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise BadRequest("model", "required, a string")
    if model not in (cfg.served_name, *cfg.model_aliases):
        raise BadRequest("model", f"The model `{model}` does not exist.", status=404)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages", "required, a non-empty list")
        texts = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise BadRequest(f"messages[{i}]", "expected an object")
            texts.append(_content_text(msg.get("content"), f"messages[{i}].content"))
        prompt_tokens = sum(count_tokens(t) for t in texts)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompt_tokens = count_tokens(prompt)
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            prompt_tokens = sum(count_tokens(p) for p in prompt)
        elif isinstance(prompt, list) and all(isinstance(p, int) for p in prompt):
            prompt_tokens = len(prompt)  # token ids
        else:
            raise BadRequest("prompt", "required, a string, a list of strings or of token ids")
    key = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    max_tokens = body.get(key, cfg.default_max_tokens)
    if max_tokens is None:
        max_tokens = cfg.default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise BadRequest(key, "expected an integer")
    if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise BadRequest(key, f"must be in [1, {MAX_TOKENS_LIMIT}], not {max_tokens}")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream", "expected a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("stream_options", "expected an object")
    include_usage = options.get("include_usage", True)
    if not isinstance(include_usage, bool):
        raise BadRequest("stream_options.include_usage", "expected a boolean")
    return Parsed(chat, prompt_tokens, max_tokens, stream, include_usage)


class Replica:
    """The I/O shell around one :class:`Batcher`: the clock, the stepping task, and one
    queue of events per request."""

    def __init__(self, cfg: EmulatorConfig, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.batcher = Batcher(cfg.profile)
        self.metrics = VllmMetrics(cfg.served_name, cfg.engine)
        self._queues: dict[int, asyncio.Queue[Event]] = {}
        self._next_id = 0
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dispatch(self, events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, Finished):
                self.metrics.finished(e)
            q = self._queues.get(e.rid)
            if q is not None:
                q.put_nowait(e)
        b = self.batcher
        self.metrics.state(b.running, b.queued, b.kv_cache_usage())

    async def _run(self) -> None:
        tick = self.cfg.tick_seconds
        while True:
            now = self.clock()
            self._dispatch(self.batcher.advance(now))
            nxt = self.batcher.next_event()
            self._kick.clear()
            timeout = None if nxt is None else max(tick, nxt - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    @property
    def full(self) -> bool:
        return self.batcher.queued >= self.cfg.max_waiting

    async def generate(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[Event]:
        """The events of one request, ending with its :class:`Finished`; cancelled in the
        batcher when the consumer stops early."""
        rid = self._next_id
        self._next_id += 1
        q: asyncio.Queue[Event] = asyncio.Queue()
        self._queues[rid] = q
        done = False
        try:
            self._dispatch(self.batcher.submit(rid, prompt_tokens, max_tokens, self.clock()))
            self._kick.set()
            while True:
                e = await q.get()
                yield e
                if isinstance(e, Finished):
                    done = True
                    return
        finally:
            del self._queues[rid]
            if not done:
                self._dispatch(self.batcher.cancel(rid, self.clock()))
                self.metrics.aborted()
                self._kick.set()


def _error(err: BadRequest) -> web.Response:
    kind = "NotFoundError" if err.status == 404 else "BadRequestError"
    body = {"error": {"message": str(err), "type": kind, "param": err.field, "code": err.status}}
    return web.json_response(body, status=err.status)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _choice(chat: bool, text: str, finish: str | None, first: bool) -> dict[str, Any]:
    if chat:
        delta: dict[str, str] = {"content": text}
        if first:
            delta = {"role": "assistant", **delta}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}


def make_app(cfg: EmulatorConfig) -> web.Application:
    """The aiohttp app of one replica (its :class:`Replica` starts with the app)."""
    app = web.Application()
    state: dict[str, Replica] = {}

    async def on_startup(app: web.Application) -> None:
        state["replica"] = Replica(cfg)
        state["replica"].start()

    async def on_cleanup(app: web.Application) -> None:
        await state["replica"].stop()

    async def completions(request: web.Request, chat: bool) -> web.StreamResponse:
        replica = state["replica"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(BadRequest("body", "not JSON"))
        try:
            req = parse_request(body, chat, cfg)
        except BadRequest as err:
            return _error(err)
        if replica.full:
            msg = f"{cfg.max_waiting} requests already waiting"
            return web.json_response(
                {"error": {"message": msg, "type": "ServiceUnavailableError", "code": 503}},
                status=503,
            )
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        head = {"id": rid, "created": created, "model": body["model"]}
        if not req.stream:
            text: list[str] = []
            async for e in replica.generate(req.prompt_tokens, req.max_tokens):
                if isinstance(e, Tokens):
                    text.append(TOKEN_TEXT * e.count)
            content = "".join(text)
            if chat:
                choice = {
                    "index": 0, "message": {"role": "assistant", "content": content},
                    "logprobs": None, "finish_reason": "length",
                }  # fmt: skip
            else:
                choice = _choice(False, content, "length", False)
            return web.json_response(
                {**head, "object": obj, "choices": [choice],
                 "usage": _usage(req.prompt_tokens, req.max_tokens)}
            )  # fmt: skip
        rsp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await rsp.prepare(request)
        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        async def send(payload: dict[str, Any]) -> None:
            await rsp.write(f"data: {json.dumps(payload)}\n\n".encode())

        async for e in replica.generate(req.prompt_tokens, req.max_tokens):
            if isinstance(e, Tokens):
                await send(
                    {**head, "object": chunk_obj,
                     "choices": [_choice(chat, TOKEN_TEXT * e.count, None, e.first)]}
                )  # fmt: skip
            else:
                await send(
                    {**head, "object": chunk_obj, "choices": [_choice(chat, "", "length", False)]}
                )
                if req.include_usage:
                    await send(
                        {**head, "object": chunk_obj, "choices": [],
                         "usage": _usage(e.prompt_tokens, e.output_tokens)}
                    )  # fmt: skip
        await rsp.write(b"data: [DONE]\n\n")
        await rsp.write_eof()
        return rsp

    async def post_completions(request: web.Request) -> web.StreamResponse:
        return await completions(request, chat=False)

    async def post_chat(request: web.Request) -> web.StreamResponse:
        return await completions(request, chat=True)

    async def models(request: web.Request) -> web.Response:
        del request
        return web.json_response(
            {"object": "list",
             "data": [{"id": cfg.served_name, "object": "model", "owned_by": "llmfleet"}]}
        )  # fmt: skip

    async def health(request: web.Request) -> web.Response:
        del request
        return web.Response(text="")

    async def metrics(request: web.Request) -> web.Response:
        del request
        replica = state["replica"]
        replica._dispatch(replica.batcher.advance(replica.clock()))  # gauges as of now
        return web.Response(
            body=replica.metrics.text(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/v1/completions", post_completions)
    app.router.add_post("/v1/chat/completions", post_chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


def profile_from_llmmodel(path: Path, gpu_type: str | None) -> tuple[str, str, ReplicaProfile]:
    """(served name, LLMModel name, profile) of an LLMModel manifest's GPU profile."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "LLMModel"]
    if not docs:
        raise ValueError(f"{path}: no LLMModel")
    model = LLMModel.model_validate(docs[0])
    profiles = {p.gpu_type: p for p in model.spec.profiles}
    if gpu_type is None and len(profiles) == 1:
        gpu_type = next(iter(profiles))
    if gpu_type not in profiles:
        raise ValueError(
            f"{path}: --gpu-type {gpu_type!r} is not one of the profiles {sorted(profiles)}"
        )
    return (
        model.spec.served_model_name,
        model.metadata.name,
        ReplicaProfile.from_gpu_profile(profiles[gpu_type]),
    )


async def serve(cfgs: Sequence[tuple[EmulatorConfig, int]], host: str) -> None:
    """Run one app per (config, port) until cancelled."""
    runners = []
    try:
        for cfg, port in cfgs:
            runner = web.AppRunner(make_app(cfg), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            runners.append(runner)
            print(f"emulating {cfg.served_name} on http://{host}:{port}", flush=True)
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmfleet.box.emulator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model", help="served model name (the OpenAI model field)")
    ap.add_argument("--llmmodel", type=Path, help="an LLMModel manifest to take the profile from")
    ap.add_argument("--gpu-type", help="which of the LLMModel's profiles")
    ap.add_argument("--prefill", type=float, help="prefill tokens/s")
    ap.add_argument("--decode", type=float, help="decode tokens/s (all sequences together)")
    ap.add_argument("--max-seqs", type=int, default=256, help="max concurrent sequences")
    ap.add_argument("--saturation", type=float, default=DEFAULT_SATURATION,
                    help="s: decode throughput is D from s x max-seqs sequences on")  # fmt: skip
    ap.add_argument("--first-token-steps", type=float, default=0.0)
    ap.add_argument("--max-waiting", type=int, default=1024)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--replicas", type=int, default=1, help="one app per port from --port on")
    args = ap.parse_args(argv)
    aliases: tuple[str, ...] = ()
    if args.llmmodel is not None:
        served, name, prof = profile_from_llmmodel(args.llmmodel, args.gpu_type)
        prof = ReplicaProfile(
            prof.prefill_tokens_per_second, prof.decode_tokens_per_second,
            prof.max_concurrent_sequences, args.saturation, args.first_token_steps,
        )  # fmt: skip
        served, aliases = args.model or served, (name,)
    else:
        missing = [f"--{n}" for n in ("model", "prefill", "decode") if getattr(args, n) is None]
        if missing:
            ap.error(f"give {', '.join(missing)} (or --llmmodel FILE)")
        served = args.model
        prof = ReplicaProfile(
            args.prefill, args.decode, args.max_seqs, args.saturation, args.first_token_steps
        )
    cfg = EmulatorConfig(served, prof, aliases, max_waiting=args.max_waiting)
    try:
        asyncio.run(serve([(cfg, args.port + i) for i in range(args.replicas)], args.host))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
