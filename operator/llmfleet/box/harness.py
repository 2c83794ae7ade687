"""A fleet in a box: the data plane the local control plane lacks (I/O layer, beside kube).

kwok (``hack/fleet.sh``) makes the operator's model pods ``Running`` on fake Nodes, with fake
pod IPs nothing answers on. The harness gives those pods a body and a network, for one
namespace:

* **Emulators.** For each Running pod (not terminating) of a model Deployment (label
  ``llmfleet.dev/model``), one ``python -m llmfleet.box.emulator --llmmodel FILE --gpu-type T``
  process on ``127.0.0.1:<free port>``: the LLMModel the label names (an LLMModel in the pod's
  namespace first, else in any namespace), the GPU type of the pod's Node (label
  ``llmfleet.dev/gpu-type``; else the model's only profile). It is stopped when the pod goes
  (deleted, terminating, no longer Running) and started again if it exits while the pod runs.
  Emulators get ``PR_SET_PDEATHSIG`` (Linux): they die with the harness.
* **kube-proxy's part.** A TCP listener on each Service's ``ClusterIP:port`` (the control
  plane's Service range on loopback, e.g. ``--service-cluster-ip-range 127.0.100.0/24``)
  spreading connections over the emulators of the Running, Ready pods the Service's selector
  matches, once their ``/health`` answers: to the one with the fewest open connections, ties
  round-robin (IPVS's ``lc``; with a connection per request, the least loaded replica, as the
  twin's router picks). Pod IPs are never used; every
  port of a Service goes to the emulator's one port. A connection with no backend is closed at
  once. A ClusterIP that cannot be bound (outside 127.0.0.0/8) is reported in ``problems``.
* **Prometheus file_sd.** ``--file-sd FILE``: a JSON list of the emulators' ``/metrics``
  targets, labelled as a PodMonitor's ``podTargetLabels`` would (``model_name``, ``region``,
  ``pool``, ``capacity_type``) plus ``namespace`` and ``pod``; rewritten atomically on change.
* **A region down.** The regions named in ``WORKDIR/down-regions`` (one a line; read every
  pass) get no emulators: those running are stopped and none is started while the name is
  there, as if the region's machines died under Running pods (the pods stay Running: what
  the apiserver shows does not change; their series leave the file_sd).
* ``WORKDIR/state.json`` (emulators, listeners, down regions, problems) after every change and
  ``WORKDIR/ready`` once every watch has listed once and the first pass is done.

Pods, Services, Nodes and LLMModels are listed and then watched (one thread each, every
request with a timeout; an expired watch lists again; an unreachable apiserver is retried
with a backoff). The asyncio loop does the rest.

CLI: ``python -m llmfleet.box.harness --kubeconfig K --namespace NS --workdir DIR
[--file-sd FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from llmfleet.api.model import LLMModel
from llmfleet.kube.render import LABEL_GPU_TYPE, LABEL_MODEL, label_value

log = logging.getLogger("llmfleet.box.harness")

API_GROUP = "llmfleet.dev"
API_VERSION = "v1alpha1"
TARGET_LABELS = ("model_name", "region", "pool", "capacity_type")
"""The pod labels a PodMonitor's ``podTargetLabels`` copies onto vLLM's series."""

REQUEST_TIMEOUT = 10.0
WATCH_SECONDS = 60
CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 600.0
"""A proxied connection with no byte either way for this long is closed."""
HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
RESTART_BACKOFF = 2.0
BIND_RETRY = 10.0

# Runs the emulator with PR_SET_PDEATHSIG (it dies with the harness), without preexec_fn
# (unsafe with threads): argv[1] is the harness's pid, checked after the prctl for the race.
_LAUNCH = """\
import ctypes, os, runpy, sys
parent = int(sys.argv.pop(1))
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
if os.getppid() != parent:
    sys.exit(0)
sys.argv[0] = "llmfleet.box.emulator"
runpy.run_module("llmfleet.box.emulator", run_name="__main__", alter_sys=True)
"""


# ---------------------------------------------------------------------------- desired state


@dataclass(frozen=True)
class ReplicaSpec:
    """One emulator to run: a Running model pod and the LLMModel profile it serves."""

    namespace: str
    pod: str
    uid: str
    labels: tuple[tuple[str, str], ...]
    ready: bool
    model: str
    model_namespace: str
    gpu_type: str
    manifest: str
    """The LLMModel as YAML (apiVersion, kind, name, namespace, spec) for ``--llmmodel``."""

    def run_key(self) -> tuple[str, str, str]:
        """What the running process depends on (a change restarts it)."""
        return (self.uid, self.gpu_type, self.manifest)


@dataclass(frozen=True)
class ServiceRoute:
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[int, ...]
    selector: tuple[tuple[str, str], ...]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _running(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and not _meta(pod).get(
        "deletionTimestamp"
    )


def _ready(pod: Mapping[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _model_manifest(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    doc = {
        "apiVersion": obj.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
        "kind": "LLMModel",
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": obj.get("spec") or {},
    }
    return yaml.safe_dump(doc, sort_keys=True)


def desired_replicas(
    pods: Iterable[Mapping[str, Any]],
    models: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, ReplicaSpec], list[str]]:
    """The emulators the Running model pods need (by pod uid), and why any pod has none."""
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for m in models:
        by_label.setdefault(label_value(str(_meta(m).get("name", ""))), []).append(m)
    out: dict[str, ReplicaSpec] = {}
    problems: list[str] = []
    for pod in pods:
        meta = _meta(pod)
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        if LABEL_MODEL not in labels or not _running(pod):
            continue
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        where = f"pod {ns}/{name}"
        candidates = sorted(
            by_label.get(labels[LABEL_MODEL], []),
            key=lambda m: (_meta(m).get("namespace") != ns, str(_meta(m).get("namespace"))),
        )
        if not candidates:
            problems.append(f"{where}: no LLMModel named {labels[LABEL_MODEL]!r}")
            continue
        obj = candidates[0]
        manifest = _model_manifest(obj)
        try:
            model = LLMModel.model_validate(yaml.safe_load(manifest))
        except ValidationError as err:
            problems.append(f"{where}: LLMModel {_meta(obj).get('name')} is not valid: {err}")
            continue
        gpu_types = [p.gpu_type for p in model.spec.profiles]
        node = nodes.get(str((pod.get("spec") or {}).get("nodeName", "")))
        gpu_type = str((_meta(node).get("labels") or {}).get(LABEL_GPU_TYPE, "")) if node else ""
        if not gpu_type and len(gpu_types) == 1:
            gpu_type = gpu_types[0]
        if gpu_type not in gpu_types:
            problems.append(
                f"{where}: GPU type {gpu_type or '(node has no ' + LABEL_GPU_TYPE + ' label)'}"
                f" is not one of LLMModel {model.name}'s profiles {gpu_types}"
            )
            continue
        out[str(meta.get("uid", f"{ns}/{name}"))] = ReplicaSpec(
            namespace=ns,
            pod=name,
            uid=str(meta.get("uid", "")),
            labels=tuple(sorted(labels.items())),
            ready=_ready(pod),
            model=model.name,
            model_namespace=str(_meta(obj).get("namespace", "")),
            gpu_type=gpu_type,
            manifest=manifest,
        )
    return out, problems


def service_routes(services: Iterable[Mapping[str, Any]]) -> list[ServiceRoute]:
    """The Services with a ClusterIP, a selector and TCP ports."""
    out = []
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        selector = spec.get("selector") or {}
        ports = tuple(
            int(p["port"])
            for p in spec.get("ports") or []
            if p.get("port") and p.get("protocol", "TCP") == "TCP"
        )
        if not ip or ip == "None" or not selector or not ports:
            continue
        meta = _meta(svc)
        out.append(
            ServiceRoute(
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                cluster_ip=str(ip),
                ports=ports,
                selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())),
            )
        )
    return out


def selects(selector: Iterable[tuple[str, str]], labels: Iterable[tuple[str, str]]) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in selector)


def file_sd(targets: Iterable[tuple[ReplicaSpec, int]]) -> list[dict[str, Any]]:
    """Prometheus file_sd entries for (replica, port) pairs, sorted."""
    out = []
    for spec, port in sorted(targets, key=lambda t: (t[0].namespace, t[0].pod)):
        labels = dict(spec.labels)
        tl = {k: labels[k] for k in TARGET_LABELS if k in labels}
        out.append(
            {
                "targets": [f"127.0.0.1:{port}"],
                "labels": {**tl, "namespace": spec.namespace, "pod": spec.pod},
            }
        )
    return out


# ---------------------------------------------------------------------------- watches


def _key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Watcher(threading.Thread):
    """List, then watch, one resource; keeps every object (a dict, as the API sends it)."""

    def __init__(
        self,
        what: str,
        api: client.ApiClient,
        list_fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        on_change: Callable[[], None],
    ) -> None:
        super().__init__(name=f"watch-{what}", daemon=True)
        self.what = what
        self._api = api
        self._list_fn = list_fn
        self._args = tuple(args)
        self._kwargs = dict(kwargs)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self.synced = threading.Event()
        self.problem: str | None = None

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> str:
        resp = self._list_fn(
            *self._args, **self._kwargs, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
        )
        try:
            body = json.loads(resp.data)
        finally:
            resp.release_conn()
        with self._lock:
            self._items = {_key(o): o for o in body.get("items") or []}
        self.synced.set()
        self.problem = None
        self._on_change()
        return str((body.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, rv: str) -> str:
        """Watch from ``rv`` for up to WATCH_SECONDS; the last resourceVersion seen."""
        w = watch.Watch()  # type: ignore[no-untyped-call]
        for event in w.stream(  # type: ignore[no-untyped-call]
            self._list_fn,
            *self._args,
            **self._kwargs,
            resource_version=rv,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            deserialize=False,
            _request_timeout=(CONNECT_TIMEOUT, WATCH_SECONDS + 15),
        ):
            obj = event.get("object") or {}
            rv = str(_meta(obj).get("resourceVersion") or rv)
            kind = event.get("type")
            if kind in ("ADDED", "MODIFIED"):
                with self._lock:
                    self._items[_key(obj)] = obj
            elif kind == "DELETED":
                with self._lock:
                    self._items.pop(_key(obj), None)
            else:
                continue
            self._on_change()
            if self._stop.is_set():
                w.stop()  # type: ignore[no-untyped-call]
                break
        return rv

    def run(self) -> None:
        backoff = 0.5
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                rv = self._watch(rv)
                backoff = 0.5
            except ApiException as err:
                if err.status == 410:  # expired: list again
                    rv = None
                    continue
                rv = None
                self.problem = f"{self.what}: {err.status} {err.reason}"
                cap = 10.0
                if err.status == 404:  # the API is not served (CRD missing): empty for now
                    cap = 2.0  # and looked for again soon: CRDs are installed after start
                    with self._lock:
                        self._items = {}
                    self.synced.set()
                    self._on_change()
                log.warning("%s; again in %.1fs", self.problem, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, cap)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
                rv = None
                self.problem = f"{self.what}: {type(err).__name__}: {err}"
                log.warning("%s; again in %.1fs", self.problem, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)


# ---------------------------------------------------------------------------- emulators


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Emulator:
    spec: ReplicaSpec
    port: int
    proc: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]
    healthy: bool = False
    health_task: asyncio.Task[None] | None = None


@dataclass
class Listener:
    route: ServiceRoute
    port: int
    server: asyncio.Server
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class Harness:
    """The emulators, listeners and file_sd of one namespace (see the module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        workdir: Path,
        file_sd_path: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.workdir = workdir
        self.file_sd_path = file_sd_path
        self.python = python
        self.emulators: dict[str, Emulator] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.backends: dict[tuple[str, int], list[int]] = {}
        self._rr: dict[tuple[str, int], int] = {}
        self._active: dict[int, int] = {}
        self.down_regions: frozenset[str] = frozenset()
        self._bind_failed: dict[tuple[str, int], tuple[float, str]] = {}
        self._restart_after: dict[str, float] = {}
        self._problems: list[str] = []
        self._last_state = ""
        self._last_sd = ""
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        loop = asyncio.get_running_loop()

        def changed() -> None:
            loop.call_soon_threadsafe(self._dirty.set)

        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        self.watchers = [
            Watcher(
                "pods", api, core.list_namespaced_pod, (namespace,),
                {"label_selector": LABEL_MODEL}, changed,
            ),
            Watcher("services", api, core.list_namespaced_service, (namespace,), {}, changed),
            Watcher("nodes", api, core.list_node, (), {}, changed),
            Watcher(
                "llmmodels", api, custom.list_cluster_custom_object,
                (API_GROUP, API_VERSION, "llmmodels"), {}, changed,
            ),
        ]  # fmt: skip

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        (self.workdir / "models").mkdir(parents=True, exist_ok=True)
        (self.workdir / "emulators").mkdir(parents=True, exist_ok=True)
        (self.workdir / "ready").unlink(missing_ok=True)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        for w in self.watchers:
            w.start()
        ready = False
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), timeout=1.0)
                self._dirty.clear()
                if self._stopping.is_set():
                    break
                await self.reconcile()
                if not ready and all(w.synced.is_set() for w in self.watchers):
                    ready = True
                    (self.workdir / "ready").write_text(f"{os.getpid()}\n")
                    log.info("synced: watching namespace %s", self.namespace)
        finally:
            (self.workdir / "ready").unlink(missing_ok=True)
            await self.shutdown()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()

    async def shutdown(self) -> None:
        for w in self.watchers:
            w.stop()
        for key in list(self.listeners):
            await self._close_listener(key)
        await asyncio.gather(*(self._stop_emulator(uid) for uid in list(self.emulators)))
        self._write_file_sd()
        self._write_state()
        if self._session is not None:
            await self._session.close()

    # -- one pass -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        pods, services, nodes, models = (w.items() for w in self.watchers)
        desired, problems = desired_replicas(
            pods, models, {str(_meta(n).get("name")): n for n in nodes}
        )
        problems += [w.problem for w in self.watchers if w.problem]
        self.down_regions = _read_down(self.workdir / "down-regions")
        desired = {
            uid: spec for uid, spec in desired.items()
            if dict(spec.labels).get("region") not in self.down_regions
        }  # fmt: skip
        now = time.monotonic()
        # emulators: stop the gone or changed, (re)start the missing
        for uid, emu in list(self.emulators.items()):
            spec = desired.get(uid)
            if spec is None or spec.run_key() != emu.spec.run_key():
                await self._stop_emulator(uid)
            elif emu.proc.returncode is not None:
                log.warning(
                    "emulator of pod %s/%s exited with %s; log %s",
                    spec.namespace, spec.pod, emu.proc.returncode, emu.log_path,
                )  # fmt: skip
                await self._stop_emulator(uid)
                self._restart_after[uid] = now + RESTART_BACKOFF
            else:
                emu.spec = spec  # readiness and labels may change without a restart
        for uid, spec in desired.items():
            if uid not in self.emulators and self._restart_after.get(uid, 0.0) <= now:
                self._restart_after.pop(uid, None)
                try:
                    await self._start_emulator(spec)
                except OSError as err:
                    problems.append(f"pod {spec.namespace}/{spec.pod}: cannot start: {err}")
        for uid in list(self._restart_after):
            if uid not in desired:
                del self._restart_after[uid]
        # listeners
        wanted: dict[tuple[str, int], ServiceRoute] = {}
        for route in service_routes(services):
            for port in route.ports:
                wanted[(route.cluster_ip, port)] = route
        for key in list(self.listeners):
            if key not in wanted:
                await self._close_listener(key)
        self.backends = {}
        for key, route in wanted.items():
            self.backends[key] = [
                e.port
                for e in sorted(self.emulators.values(), key=lambda e: e.spec.pod)
                if e.healthy and e.spec.ready and selects(route.selector, e.spec.labels)
            ]
            if key in self.listeners:
                self.listeners[key].route = route
                continue
            failed = self._bind_failed.get(key)
            if failed is not None and now - failed[0] < BIND_RETRY:
                problems.append(failed[1])
                continue
            try:
                await self._open_listener(key, route)
                self._bind_failed.pop(key, None)
            except OSError as err:
                msg = (
                    f"service {route.namespace}/{route.name}: cannot listen on "
                    f"{key[0]}:{key[1]} ({err.strerror or err}); is the control plane's "
                    "--service-cluster-ip-range on loopback (127.0.0.0/8)?"
                )
                log.warning("%s", msg)
                self._bind_failed[key] = (now, msg)
                problems.append(msg)
        self._problems = problems
        self._write_file_sd()
        self._write_state()

    # -- emulators ------------------------------------------------------------------------

    async def _start_emulator(self, spec: ReplicaSpec) -> None:
        manifest = self.workdir / "models" / f"{spec.model_namespace}.{spec.model}.yaml"
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(spec.manifest)
        tmp.replace(manifest)
        port = free_port()
        log_path = self.workdir / "emulators" / f"{spec.namespace}.{spec.pod}.log"
        log_file = log_path.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, "-c", _LAUNCH, str(os.getpid()),
                "--llmmodel", str(manifest), "--gpu-type", spec.gpu_type,
                "--host", "127.0.0.1", "--port", str(port),
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        except OSError:
            log_file.close()
            raise
        emu = Emulator(spec, port, proc, log_path, log_file)
        emu.health_task = asyncio.create_task(self._await_health(emu))
        self.emulators[spec.uid] = emu
        log.info(
            "pod %s/%s: emulator of %s (%s) on 127.0.0.1:%d, pid %d",
            spec.namespace, spec.pod, spec.model, spec.gpu_type, port, proc.pid,
        )  # fmt: skip

    async def _await_health(self, emu: Emulator) -> None:
        assert self._session is not None
        url = f"http://127.0.0.1:{emu.port}/health"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while time.monotonic() < deadline and emu.proc.returncode is None:
            try:
                async with self._session.get(url) as resp:
                    if resp.status == 200:
                        emu.healthy = True
                        self._dirty.set()
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        if emu.proc.returncode is None:
            log.warning("emulator on port %d not healthy after %.0fs", emu.port, HEALTH_TIMEOUT)
        self._dirty.set()

    async def _stop_emulator(self, uid: str) -> None:
        emu = self.emulators.pop(uid, None)
        if emu is None:
            return
        if emu.health_task is not None:
            emu.health_task.cancel()
        if emu.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                emu.proc.terminate()
            try:
                await asyncio.wait_for(emu.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    emu.proc.kill()
                await asyncio.wait_for(emu.proc.wait(), STOP_TIMEOUT)
        emu.log_file.close()
        log.info("pod %s/%s: emulator stopped", emu.spec.namespace, emu.spec.pod)

    # -- listeners (kube-proxy's part) -----------------------------------------------------

    async def _open_listener(self, key: tuple[str, int], route: ServiceRoute) -> None:
        holder: dict[str, Listener] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            lst = holder["l"]
            lst.writers.add(writer)
            try:
                await self._proxy(key, reader, writer)
            finally:
                lst.writers.discard(writer)

        server = await asyncio.start_server(handle, host=key[0], port=key[1], reuse_address=True)
        holder["l"] = self.listeners[key] = Listener(route, key[1], server)
        log.info("service %s/%s: listening on %s:%d", route.namespace, route.name, *key)

    async def _close_listener(self, key: tuple[str, int]) -> None:
        lst = self.listeners.pop(key, None)
        if lst is None:
            return
        lst.server.close()
        for w in list(lst.writers):
            w.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lst.server.wait_closed(), STOP_TIMEOUT)
        log.info("service %s/%s: closed %s:%d", lst.route.namespace, lst.route.name, *key)

    async def _proxy(
        self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ports = list(self.backends.get(key, ()))
        start = self._rr.get(key, 0)
        self._rr[key] = start + 1
        ports = connection_order(ports, start, self._active)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        port = 0
        for port in ports:
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
                )
                break
            except (OSError, TimeoutError) as err:
                log.warning("%s:%d -> 127.0.0.1:%d: %s", *key, port, err)
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._active[port] = self._active.get(port, 0) + 1
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._active[port] -= 1
            for w in (up_writer, writer):
                w.close()

    # -- outputs --------------------------------------------------------------------------

    def _write_file_sd(self) -> None:
        if self.file_sd_path is None:
            return
        text = json.dumps(
            file_sd((e.spec, e.port) for e in self.emulators.values() if e.proc.returncode is None),
            indent=2,
        )
        if text != self._last_sd or not self.file_sd_path.exists():
            _write_atomic(self.file_sd_path, text + "\n")
            self._last_sd = text

    def state(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "emulators": [
                {
                    "namespace": e.spec.namespace,
                    "pod": e.spec.pod,
                    "model": e.spec.model,
                    "gpu_type": e.spec.gpu_type,
                    "port": e.port,
                    "pid": e.proc.pid,
                    "healthy": e.healthy,
                    "log": str(e.log_path),
                }
                for e in sorted(self.emulators.values(), key=lambda e: (e.spec.pod, e.port))
            ],
            "listeners": [
                {
                    "service": f"{lst.route.namespace}/{lst.route.name}",
                    "url": f"http://{ip}:{port}",
                    "backends": [f"127.0.0.1:{p}" for p in self.backends.get((ip, port), [])],
                }
                for (ip, port), lst in sorted(self.listeners.items())
            ],
            "down_regions": sorted(self.down_regions),
            "problems": self._problems,
        }

    def _write_state(self) -> None:
        text = json.dumps(self.state(), indent=2)
        if text != self._last_state:
            _write_atomic(self.workdir / "state.json", text + "\n")
            self._last_state = text


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF (then half-close ``dst``), an error, or IDLE_TIMEOUT of silence."""
    try:
        while True:
            data = await asyncio.wait_for(src.read(65536), IDLE_TIMEOUT)
            if not data:
                break
            dst.write(data)
            await asyncio.wait_for(dst.drain(), IDLE_TIMEOUT)
        if dst.can_write_eof():
            dst.write_eof()
    except (OSError, TimeoutError):
        dst.close()


def connection_order(ports: Sequence[int], turn: int, active: Mapping[int, int]) -> list[int]:
    """The backends to try for a new connection, best first: fewest open connections
    (``active``), ties in round-robin order from the ``turn``-th."""
    if not ports:
        return []
    k = turn % len(ports)
    return sorted([*ports[k:], *ports[:k]], key=lambda p: active.get(p, 0))


def _read_down(path: Path) -> frozenset[str]:
    """The region names in ``path``, one a line (no file: none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def _main(args: argparse.Namespace) -> None:
    api = config.new_client_from_config(config_file=str(args.kubeconfig))  # type: ignore[no-untyped-call]
    harness = Harness(api, args.namespace, args.workdir.resolve(), args.file_sd, args.python)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, harness.stop)
    try:
        await harness.run()
    finally:
        api.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmfleet.box.harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--kubeconfig", type=Path, required=True)
    ap.add_argument("-n", "--namespace", default="llmfleet")
    ap.add_argument("--workdir", type=Path, required=True, help="state.json, ready, logs")
    ap.add_argument("--file-sd", type=Path, help="Prometheus file_sd JSON to write")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the emulators")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
