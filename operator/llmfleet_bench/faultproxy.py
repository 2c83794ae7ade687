"""A small fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1, for ``llmfleet bench soak``.

One proxy stands in front of Prometheus (plain HTTP) and one in front of the kube-apiserver
(TLS): the operator is pointed at the proxy, the benchmark at the real server. Each
connection carries exactly one request: the proxy reads the request head, decides what to do
with it (:class:`Fault`), forwards it upstream with ``Connection: close`` and copies the
answer back byte for byte until the upstream closes (watch streams included), then closes
the client's connection. Clients open a new connection per request, so every request meets
the fault in force when it is sent.

**TLS.** The apiserver proxy terminates TLS with its own certificate
(:func:`make_proxy_pki`: a throwaway CA and a serving certificate for ``IP:127.0.0.1``, made
with the ``openssl`` command) and opens its own TLS connection to the apiserver with the
admin's client certificate: the operator's kubeconfig names the proxy and its CA, so the
proxy sees (and can answer) every HTTP request, watch requests and writes apart.

Faults (:class:`Fault`, set with :meth:`FaultProxy.set_fault`, cleared with ``None``):

``delay``      wait ``delay_seconds`` (a stop flag cuts it short), then forward;
``drop``       close the connection without an answer (after reading the request);
``html``       answer ``200 text/html`` (a captive portal or an ingress' error page);
``values``     forward, then replace every sample value in a Prometheus JSON answer by a
               non-numeric string;
``gone``       watch requests (``watch=true``/``watch=1``) get ``410 Gone`` as the
               kube-apiserver sends it for an expired resource version: ``200``, then one
               ``ERROR`` event with code 410 ("too old resource version");
``gone-http``  watch requests get an HTTP ``410`` Status instead (what the apiserver answers
               for an expired list ``continue`` token; kopf 1.45 does not survive it on a
               watch: see :mod:`llmfleet_bench.soak`);
``conflict``   writes (POST, PUT, PATCH, DELETE) get ``409 Conflict`` (a Status object).

``fraction`` of the matching requests meet the fault (a seeded draw per request); the others
pass. Nothing leaves 127.0.0.1; every socket operation has a timeout; :meth:`FaultProxy.stop`
closes the listener and every open connection.
"""

from __future__ import annotations

import contextlib
import json
import random
import selectors
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Fault", "FaultKind", "FaultProxy", "ProxyPki", "make_proxy_pki"]

FaultKind = Literal["delay", "drop", "html", "values", "gone", "gone-http", "conflict"]
LOOPBACK = "127.0.0.1"
HEAD_LIMIT = 64 * 1024
"""Most bytes of a request head read before the request is refused."""
BODY_LIMIT = 16 * 1024 * 1024
"""Most bytes of a request body buffered (a 409 answer reads the body first)."""
CLIENT_TIMEOUT = 30.0
"""Seconds a client may take to send its request head."""
CONNECT_TIMEOUT = 5.0
"""Seconds to connect (and handshake) to the upstream."""
STREAM_IDLE_TIMEOUT = 400.0
"""Seconds without a byte either way before a forwarded connection is closed (longer than
kopf's watch ``server_timeout`` of 300 s, so a healthy watch ends on the server's clock)."""
EXPIRED = "too old resource version: 1 (2)"
MAX_CONNECTIONS = 256
"""Connections served at once; more are refused (closed) until some end."""


@dataclass(frozen=True)
class Fault:
    """What the proxy does to the requests it matches (see the module docstring)."""

    kind: FaultKind
    fraction: float = 1.0
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class ProxyPki:
    """The proxy's throwaway CA and serving certificate (PEM files)."""

    ca_cert: Path
    cert: Path
    key: Path


def make_proxy_pki(directory: Path) -> ProxyPki:
    """A CA and a serving certificate for ``IP:127.0.0.1`` signed by it, with ``openssl``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "proxy.key", directory / "proxy.csr", directory / "proxy.crt"
    ext = directory / "proxy.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert),
         "-days", "3", "-subj", "/CN=llmfleet-soak-proxy-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
         "-subj", "/CN=llmfleet-soak-proxy"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "3", "-extfile", str(ext)],
    ]  # fmt: skip
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}: exit {proc.returncode}: {proc.stderr[-500:]}")
    return ProxyPki(ca_cert, cert, key)


@dataclass
class _Request:
    method: str
    target: str
    head: bytes
    """The head as forwarded (``Connection: close``), ending in a blank line."""
    rest: bytes
    """Bytes read past the head (the start of the body)."""
    content_length: int

    @property
    def is_watch(self) -> bool:
        query = self.target.partition("?")[2]
        return any(p in ("watch=true", "watch=1") for p in query.split("&"))

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


class FaultProxy:
    """A reverse proxy ``127.0.0.1:port`` -> ``127.0.0.1:upstream_port`` that can inject
    :class:`Fault` s. ``server_tls`` makes it serve TLS, ``upstream_tls`` makes it speak TLS
    to the upstream."""

    def __init__(
        self,
        name: str,
        upstream_port: int,
        *,
        server_tls: ssl.SSLContext | None = None,
        upstream_tls: ssl.SSLContext | None = None,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self._server_tls = server_tls
        self._upstream_tls = upstream_tls
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.5)
        self.port: int = int(self._sock.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._watches: set[socket.socket] = set()
        """Client sockets of the watch streams being forwarded."""
        self._threads: set[threading.Thread] = set()
        self.counts: Counter[str] = Counter()
        """Requests by outcome: ``forwarded``, ``upstream-down``, and one key per fault."""
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{name}-accept", daemon=True
        )
        self._acceptor.start()

    # ---------------------------------------------------------------- control

    @property
    def url(self) -> str:
        scheme = "https" if self._server_tls is not None else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def set_fault(self, fault: Fault | None) -> None:
        with self._lock:
            self._fault = fault

    @property
    def fault(self) -> Fault | None:
        with self._lock:
            return self._fault

    def faulted(self) -> int:
        """Requests that met a fault so far."""
        with self._lock:
            return sum(
                n
                for k, n in self.counts.items()
                if k not in ("forwarded", "upstream-down", "refused")
            )

    def cut_watches(self) -> int:
        """Close every watch stream being forwarded (as an apiserver restart or its watch
        timeout does): the clients watch again, and meet the fault in force. How many."""
        with self._lock:
            watches = list(self._watches)
        for s in watches:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        return len(watches)

    def stop(self) -> None:
        """Close the listener and every open connection; join the threads (bounded)."""
        self._stop.set()
        self._acceptor.join(timeout=5)
        self._sock.close()
        with self._lock:
            open_now, threads = list(self._open), list(self._threads)
        for s in open_now:
            _close(s)
        for t in threads:
            t.join(timeout=2)

    # ---------------------------------------------------------------- serving

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._threads) >= MAX_CONNECTIONS:
                    self.counts["refused"] += 1
                    _close(conn)
                    continue
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                     name=f"{self.name}-conn")  # fmt: skip
                self._threads.add(t)
            t.start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._open.add(s)

    def _serve(self, conn: socket.socket) -> None:
        client: socket.socket = conn
        upstream: socket.socket | None = None
        self._track(conn)
        try:
            client.settimeout(CLIENT_TIMEOUT)
            if self._server_tls is not None:
                client = self._server_tls.wrap_socket(conn, server_side=True)
                self._track(client)
            req = _read_request(client)
            if req is None:
                return
            fault = self._draw(req)
            if fault is not None and self._answer(fault, req, client):
                return
            try:
                upstream = self._connect()
            except OSError:
                self._count("upstream-down")
                return  # the client sees the connection closed, as with a dead server
            self._count("forwarded")
            if req.is_watch:
                with self._lock:
                    self._watches.add(client)
            if fault is not None and fault.kind == "values":
                _send_values_garbage(req, client, upstream)
            else:
                upstream.sendall(req.head + req.rest)
                _pipe(client, upstream, self._stop)
        except (OSError, ssl.SSLError, ValueError):
            return  # a client or upstream that went away: nothing to answer
        finally:
            for s in (client, conn, upstream):
                if s is not None:
                    _close(s)
            with self._lock:
                self._open.discard(conn)
                self._open.discard(client)
                self._watches.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
                self._threads.discard(threading.current_thread())

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _draw(self, req: _Request) -> Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if fault.kind in ("gone", "gone-http") and not req.is_watch:
                return None
            if fault.kind == "conflict" and not req.is_write:
                return None
            return fault if self._rng.random() < fault.fraction else None

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((LOOPBACK, self.upstream_port), timeout=CONNECT_TIMEOUT)
        self._track(raw)
        if self._upstream_tls is None:
            return raw
        s = self._upstream_tls.wrap_socket(raw, server_hostname=LOOPBACK)
        self._track(s)
        return s

    def _answer(self, fault: Fault, req: _Request, client: socket.socket) -> bool:
        """Answer ``req`` as ``fault`` says; False when the request is still to be forwarded."""
        if fault.kind == "delay":
            self._count("delay")
            self._stop.wait(fault.delay_seconds)
            return self._stop.is_set()
        if fault.kind == "values":
            self._count("values")
            return False
        self._count(fault.kind)
        if fault.kind == "drop":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            return True
        if fault.kind == "html":
            page = (
                b"<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"
            )
            client.sendall(_response(200, "OK", "text/html; charset=utf-8", page))
            return True
        if fault.kind == "conflict":
            _drain_body(client, req)
            status = _status(409, "Conflict", "Operation cannot be fulfilled: the object has been "
                             "modified; please apply your changes to the latest version and try again")  # fmt: skip
            client.sendall(_response(409, "Conflict", "application/json", status))
            return True
        if fault.kind == "gone":  # as the apiserver's watch cache answers an expired watch
            event = {"type": "ERROR", "object": json.loads(_status(410, "Expired", EXPIRED))}
            body = json.dumps(event).encode() + b"\n"
            client.sendall(_response(200, "OK", "application/json", body))
        else:  # gone-http: an HTTP 410 Status (an expired continue token's answer)
            client.sendall(
                _response(410, "Gone", "application/json", _status(410, "Expired", EXPIRED))
            )
        return True


# --------------------------------------------------------------------------- HTTP bits


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.close()


def _read_request(client: socket.socket) -> _Request | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = client.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > HEAD_LIMIT:
            client.sendall(_response(431, "Request Header Fields Too Large", "text/plain", b""))
            return None
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = [*lines[0].split(" "), "", ""][:3]
    headers: list[tuple[str, str]] = []
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key in ("connection", "keep-alive", "proxy-connection"):
            continue
        if key == "content-length":
            length = int(value.strip())
        headers.append((name.strip(), value.strip()))
    headers.append(("Connection", "close"))
    out = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return _Request(method.upper(), target, out.encode("latin-1") + b"\r\n", rest, length)


def _drain_body(client: socket.socket, req: _Request) -> None:
    left = min(req.content_length, BODY_LIMIT) - len(req.rest)
    while left > 0:
        chunk = client.recv(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def _response(code: int, reason: str, ctype: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    ).encode()  # fmt: skip


def _pipe(client: socket.socket, upstream: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until the upstream closes (or the client does, or nothing moves
    for :data:`STREAM_IDLE_TIMEOUT`)."""
    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ, upstream)
    sel.register(upstream, selectors.EVENT_READ, client)
    client.setblocking(False)
    upstream.setblocking(False)
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            # TLS sockets may hold decrypted bytes select() cannot see: drain them first
            ready = [sel.get_key(s) for s in (client, upstream)
                     if isinstance(s, ssl.SSLSocket) and s.pending()]  # fmt: skip
            if not ready:
                ready = [k for k, _mask in sel.select(timeout=1.0)]
            if not ready:
                if time.monotonic() - idle_since > STREAM_IDLE_TIMEOUT:
                    return
                continue
            idle_since = time.monotonic()
            for key in ready:
                src: Any = key.fileobj
                dst: socket.socket = key.data
                try:
                    data = src.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                if not data:
                    return
                _send_all(dst, data)
    finally:
        sel.close()


def _send_all(dst: socket.socket, data: bytes) -> None:
    """``sendall`` on a non-blocking socket (bounded by :data:`CLIENT_TIMEOUT`)."""
    deadline = time.monotonic() + CLIENT_TIMEOUT
    view = memoryview(data)
    while view:
        try:
            n = dst.send(view)
            view = view[n:]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            if time.monotonic() > deadline:
                raise TimeoutError("client does not read") from None
            time.sleep(0.005)


def _send_values_garbage(req: _Request, client: socket.socket, upstream: socket.socket) -> None:
    """Forward ``req`` (uncompressed), read the whole answer, replace every sample value in
    it by a non-numeric string, and send it back with its length."""
    head = b"\r\n".join(
        line for line in req.head.split(b"\r\n") if not line.lower().startswith(b"accept-encoding:")
    )
    upstream.sendall(head + req.rest)
    upstream.settimeout(CLIENT_TIMEOUT)
    data = b""
    while len(data) < BODY_LIMIT:
        chunk = upstream.recv(65536)
        if not chunk:
            break
        data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    head_bytes, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head_bytes.lower():
        body = _dechunk(body)
    try:
        doc = json.loads(body)
        _spoil(doc)
        body = json.dumps(doc).encode()
    except ValueError:
        pass  # not JSON: leave it as it is
    code = int(status_line.split(b" ")[1]) if status_line.count(b" ") else 502
    client.sendall(_response(code, "OK" if code == 200 else "Error", "application/json", body))


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


def _spoil(doc: Any) -> None:
    """Every ``[time, "value"]`` pair in a Prometheus answer gets a non-numeric value."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "value" and isinstance(v, list) and len(v) == 2:
                v[1] = "not-a-number"
            elif k == "values" and isinstance(v, list):
                for pair in v:
                    if isinstance(pair, list) and len(pair) == 2:
                        pair[1] = "n/a"
            else:
                _spoil(v)
    elif isinstance(doc, list):
        for x in doc:
            _spoil(x)
