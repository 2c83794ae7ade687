"""A real, throwaway local Kubernetes control plane: the one launcher of it.

Wraps ``hack/bin/llmfleet-controlplane`` (embedded etcd + kube-apiserver +
kube-controller-manager on 127.0.0.1, built from source by
``hack/controlplane.sh build``). Stdlib only. The integration tests (through
``tests/support/controlplane.py``) and ``llmfleet bench controller`` start it with:

    with LocalControlPlane(tmp_path / "cp") as cp:
        client = kubernetes.config.new_client_from_config(str(cp.kubeconfig))
        ...

Each instance uses four consecutive TCP ports: ``port`` (kube-apiserver),
``port+1``/``port+2`` (etcd client/peer) and ``port+3``
(kube-controller-manager).

A stopped (or :meth:`~LocalControlPlane.kill`-ed) instance starts again with
:meth:`~LocalControlPlane.start` on the same data dir and ports: the binary keeps the
certificates and the etcd data, so every object survives (``llmfleet bench soak`` kills the
apiserver this way).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = [
    "DEFAULT_BINARY",
    "PORTS_PER_INSTANCE",
    "ControlPlaneError",
    "LocalControlPlane",
    "binary_path",
    "ensure_binary",
    "find_free_port_block",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "hack" / "controlplane.sh"
DEFAULT_BINARY = REPO_ROOT / "hack" / "bin" / "llmfleet-controlplane"
PORTS_PER_INSTANCE = 4

_build_lock = threading.Lock()
_build_state = {"checked": False}


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or did not become ready."""


def binary_path() -> Path:
    """Path of the control plane binary (``$LLMFLEET_CONTROLPLANE_BIN`` overrides)."""
    env = os.environ.get("LLMFLEET_CONTROLPLANE_BIN")
    return Path(env) if env else DEFAULT_BINARY


def ensure_binary(timeout: float = 3600) -> Path:
    """Build (or refresh) the binary via ``hack/controlplane.sh build-controlplane``.

    The script is a no-op when the binary is newer than its sources, so this
    is cheap after the first call. If Go is unavailable but a binary exists,
    the existing binary is used. A cold build takes several minutes.
    """
    binary = binary_path()
    with _build_lock:
        if _build_state["checked"] or os.environ.get("LLMFLEET_CONTROLPLANE_BIN"):
            if not binary.exists():
                raise ControlPlaneError(f"control plane binary not found: {binary}")
            return binary
        have_go = _which("go") is not None
        if not have_go and binary.exists():
            _build_state["checked"] = True
            return binary
        if not have_go:
            raise ControlPlaneError(
                f"{binary} is missing and `go` is not on PATH; run `bash {SCRIPT} build`"
            )
        if not binary.exists():
            print(
                f"[controlplane] building {binary.name} (a cold build takes several minutes)...",
                file=sys.stderr,
                flush=True,
            )
        proc = subprocess.run(
            ["bash", str(SCRIPT), "build-controlplane"],
            check=False,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not binary.exists():
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise ControlPlaneError(
                f"`{SCRIPT} build-controlplane` failed (exit {proc.returncode}):\n{tail}"
            )
        _build_state["checked"] = True
        return binary


def _which(name: str) -> str | None:
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_free_port_block(
    count: int = PORTS_PER_INSTANCE, low: int = 20000, high: int = 32000
) -> int:
    """Return P such that P..P+count-1 are free on 127.0.0.1.

    Picks from below the usual Linux ephemeral range so outgoing connections
    do not steal the ports between the check and the bind.
    """
    for _ in range(200):
        base = random.randrange(low, high - count, count)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise ControlPlaneError("could not find free ports for a control plane")


class LocalControlPlane:
    """One etcd + kube-apiserver + kube-controller-manager, in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        binary: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self._auto_port = port is None
        self.port: int = port if port is not None else find_free_port_block()
        self.extra_args = list(extra_args)
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- public properties -------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """Admin (system:masters) kubeconfig; exists once the cluster is ready."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "controlplane.log"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``KUBECONFIG`` pointing at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # -- lifecycle ----------------------------------------------------------
    def start(self, timeout: float = 60) -> LocalControlPlane:
        """Start and block until ready (kubeconfig written). Builds if needed."""
        if self.running():
            return self
        binary = self._binary or ensure_binary()
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            try:
                self._start_once(binary, timeout)
                self._auto_port = False  # a restart keeps the ports (clients point at them)
                return self
            except ControlPlaneError as e:
                if attempt + 1 < attempts and "address already in use" in str(e):
                    self.port = find_free_port_block()
                    continue
                raise
        raise AssertionError("unreachable")

    def _start_once(self, binary: Path, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "ready"
        ready.unlink(missing_ok=True)
        args = [
            str(binary),
            "run",
            "--data-dir",
            str(self.workdir),
            "--port",
            str(self.port),
            f"--ready-timeout={max(int(timeout), 1)}s",
            *self.extra_args,
        ]
        # PR_SET_PDEATHSIG fires when the *thread* that forked us exits, so
        # only ask for it when starting from the main thread.
        if (
            sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread()
        ):
            args.append("--exit-with-parent")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while running
        self._log.write(f"\n==== {time.strftime('%H:%M:%S')} starting: {' '.join(args)}\n".encode())
        self._log.flush()
        log_offset = self._log.tell()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal Ctrl-C goes to pytest, which stops us in order
        )
        deadline = time.monotonic() + timeout
        while not (ready.exists() and self.kubeconfig.exists()):
            code = self._proc.poll()
            if code is not None:
                tail = self._log_tail(log_offset)
                self._close_log()
                self._proc = None
                raise ControlPlaneError(
                    f"control plane on port {self.port} exited with code {code} before becoming ready; "
                    f"log {self.log_path}:\n{tail}"
                )
            if time.monotonic() > deadline:
                tail = self._log_tail(log_offset)
                self.stop()
                raise ControlPlaneError(
                    f"control plane on port {self.port} not ready after {timeout:.0f}s; "
                    f"log {self.log_path}:\n{tail}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; waits for exit."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._close_log()

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL the supervisor, as a crash would (its children die with it through
        ``PR_SET_PDEATHSIG``); waits for exit. :meth:`start` brings it back on the same
        data dir and ports."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=timeout)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, offset: int = 0, lines: int = 60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError as e:
            return f"(cannot read log: {e})"
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"LocalControlPlane(workdir={str(self.workdir)!r}, port={self.port}, {state})"
