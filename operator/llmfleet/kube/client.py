"""Thin, explicit access to one Kubernetes cluster.

Everything here takes a :class:`Cluster` (no module-level client, no global config) and
every request carries a timeout. Writes are server-side apply with field manager
``llmfleet`` so repeated applies are idempotent and ownership of fields is visible.

Errors are :class:`KubeError` values with the apiserver's message; an apiserver that does
not answer at all (refused, timed out, TLS failure) is :class:`ClusterUnreachable`. A Cluster
built from a kubeconfig held in memory (a Region's Secret) never names its server in a
message (``show_server`` is False: the messages reach statuses and Events, which more people
read than the Secret): its :attr:`Cluster.name` says where it came from instead. A write
(or read) answered ``409 Conflict`` (a concurrent writer won the race; not ``AlreadyExists``)
or ``429 Too Many Requests`` is tried again after an exponential backoff
(:class:`RetryPolicy`, honouring ``Retry-After``); anything else is not retried.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

FIELD_MANAGER = "llmfleet"
DEFAULT_TIMEOUT = 15.0


class KubeError(RuntimeError):
    """A Kubernetes request failed; the message says which object and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterUnreachable(KubeError):
    """The apiserver did not answer (connection refused or reset, timeout, TLS failure)."""


class ApiNotServed(KubeError):
    """The apiserver does not serve the API of a kind (its CRD is not installed)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for answers worth repeating (409 Conflict, 429): ``attempts`` tries in all,
    waiting ``base * 2**(n-1)`` seconds (at most ``max_seconds``) after the n-th."""

    attempts: int = 5
    base_seconds: float = 0.1
    max_seconds: float = 2.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = min(self.max_seconds, self.base_seconds * 2.0 ** (attempt - 1))
        if retry_after is not None:
            wait = min(self.max_seconds, max(wait, retry_after))
        return float(wait)


def retryable(err: ApiException) -> bool:
    """A conflict with a concurrent writer, or throttling: the same request may succeed."""
    if err.status == 429:
        return True
    if err.status != 409:
        return False
    try:
        reason = json.loads(err.body or "{}").get("reason")
    except (TypeError, ValueError, AttributeError):
        reason = None
    return bool(reason != "AlreadyExists")


def _retry_after(err: ApiException) -> float | None:
    value = (err.headers or {}).get("Retry-After") if err.headers else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def explain_api_exception(err: ApiException) -> str:
    """The apiserver's own message (it names the field for validation errors)."""
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        return f"{err.status} {err.reason}"
    return str(body.get("message") or f"{err.status} {err.reason}")


NOT_INLINE: dict[str, tuple[str, ...]] = {
    "clusters": ("certificate-authority",),
    "users": ("exec", "auth-provider", "tokenFile", "client-certificate", "client-key"),
}
"""Keys a kubeconfig held in memory may not use: a command to run (``exec``,
``auth-provider``) or a file to read (``tokenFile: /var/run/secrets/.../token`` would send
the operator's own ServiceAccount token to the kubeconfig's server). Its credentials must be
inline (``token``, ``client-certificate-data``, ``certificate-authority-data``, ...)."""


def _refuse_not_inline(kubeconfig: dict[str, Any]) -> None:
    for section, keys in NOT_INLINE.items():
        item = section[:-1]  # clusters[].cluster, users[].user
        for i, entry in enumerate(kubeconfig.get(section) or []):
            body = entry.get(item) if isinstance(entry, dict) else None
            for key in keys:
                if isinstance(body, dict) and key in body:
                    raise ValueError(
                        f"{section}[{i}].{item}.{key}: a kubeconfig from a Secret may not run "
                        "commands or read files of the operator; give the credentials inline "
                        "(token, client-certificate-data, client-key-data, "
                        "certificate-authority-data)"
                    )


@dataclass
class Cluster:
    """One cluster reached through a kubeconfig (or in-cluster credentials)."""

    api: client.ApiClient
    timeout: float = DEFAULT_TIMEOUT
    name: str = "local"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    """How backoff waits (tests pass a recorder)."""
    show_server: bool = True
    """Name the apiserver URL in error messages (False for a cluster whose kubeconfig came
    from a Secret: its URL is the Secret's content)."""
    create_namespaces: bool = True
    """:meth:`ensure_namespace` creates a missing namespace; False only checks that it
    exists (an operator without the right to create namespaces)."""

    @classmethod
    def connect(
        cls,
        kubeconfig: Path | None = None,
        context: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str = "local",
    ) -> Cluster:
        """From a kubeconfig file; in-cluster credentials when ``kubeconfig`` is None and
        no ``KUBECONFIG``/``~/.kube/config`` exists."""
        try:
            api = config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context
            )
        except config.ConfigException:
            if kubeconfig is not None:
                raise
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api = client.ApiClient(cfg)
        return cls(api=api, timeout=timeout, name=name)

    @classmethod
    def from_kubeconfig_dict(
        cls,
        kubeconfig: dict[str, Any],
        name: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        show_server: bool = False,
        create_namespaces: bool = True,
    ) -> Cluster:
        """From a kubeconfig held in memory (e.g. read from a Secret). Its server is not
        named in messages unless ``show_server``; ``name`` should say where it came from.
        Raises ValueError (without the kubeconfig's content) when it is not one, or when it
        would run a command or read a file of this process (see :data:`NOT_INLINE`)."""
        cfg = client.Configuration()
        if not isinstance(kubeconfig, dict):
            raise ValueError(f"a kubeconfig is a mapping, not a {type(kubeconfig).__name__}")
        _refuse_not_inline(kubeconfig)
        try:
            loader = config.kube_config.KubeConfigLoader(config_dict=kubeconfig)
            loader.load_and_set(cfg)
        except (config.ConfigException, KeyError, AttributeError, IndexError) as err:
            # valid YAML that is not a kubeconfig (no current context, no cluster, ...); the
            # loader's message may quote the document, so only its kind is told
            raise ValueError(
                f"{type(err).__name__} (it needs clusters, users, contexts and a current-context)"
            ) from None
        # one connection attempt per request: a dead region must not cost 4 x the timeout
        cfg.retries = 1
        return cls(
            api=client.ApiClient(cfg),
            timeout=timeout,
            name=name,
            show_server=show_server,
            create_namespaces=create_namespaces,
        )

    def with_namespace_creation(self, create: bool) -> Cluster:
        """This cluster (the same client and discovery) with :attr:`create_namespaces` set
        to ``create``; itself when it already is. Closing the copy closes the shared client."""
        if self.create_namespaces == create:
            return self
        view = dataclasses.replace(self, create_namespaces=create)
        dyn = getattr(self, "_dynamic", None)
        if dyn is not None:
            view._dynamic = dyn
        return view

    def close(self) -> None:
        self.api.close()

    @property
    def server(self) -> str:
        """The apiserver URL; two Clusters with the same server reach the same objects.
        A key, not for messages (see :attr:`show_server`)."""
        return str(self.api.configuration.host)

    def _redact(self, text: str) -> str:
        """``text`` without this cluster's server URL, host or port (unless shown)."""
        if self.show_server:
            return text
        parsed = urlsplit(self.server)
        for secret in sorted(
            {self.server, parsed.netloc, parsed.hostname or ""}, key=len, reverse=True
        ):
            if secret:
                text = text.replace(secret, "<server>")
        if parsed.port is not None:
            text = re.sub(rf"(?<![0-9]){parsed.port}(?![0-9])", "<port>", text)
        return text

    @property
    def dynamic(self) -> DynamicClient:
        dyn = getattr(self, "_dynamic", None)
        if dyn is None:
            dyn = self._call("discovery", lambda: DynamicClient(self.api), retry=False)
            self._dynamic = dyn
        return dyn  # type: ignore[no-any-return]

    def _call(self, what: str, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        """``fn()`` with the errors turned into :class:`KubeError` values; conflicts and
        throttling tried again per :attr:`retry` (see the module docstring)."""
        attempt = 1
        while True:
            try:
                return fn()
            except ApiException as err:
                if retry and retryable(err) and attempt < self.retry.attempts:
                    self.sleep(self.retry.delay(attempt, _retry_after(err)))
                    attempt += 1
                    continue
                tried = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise KubeError(
                    f"{self.name}: {what}: {self._redact(explain_api_exception(err))}{tried}",
                    err.status,
                ) from None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                reason = getattr(err, "reason", None) or err
                apiserver = f"apiserver {self.server}" if self.show_server else "its apiserver"
                raise ClusterUnreachable(
                    f"{self.name}: {what}: {apiserver} unreachable: "
                    f"{type(reason).__name__}: {self._redact(str(reason))[:200]}"
                ) from None

    def resource(self, api_version: str, kind: str) -> Any:
        def lookup() -> Any:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

        try:
            return self._call(f"discover {api_version} {kind}", lookup, retry=False)
        except ResourceNotFoundError:
            # discovery is cached; a CRD installed a moment ago needs a refresh
            self._call("discovery", self.dynamic.resources.invalidate_cache, retry=False)
            try:
                return self._call(f"discover {api_version} {kind}", lookup, retry=False)
            except ResourceNotFoundError:
                raise ApiNotServed(
                    f"{self.name}: the API {api_version} {kind} is not served (CRD missing?)"
                ) from None

    # ------------------------------------------------------------------ writes

    def apply(
        self,
        obj: dict[str, Any],
        *,
        force: bool = True,
        dry_run: bool = False,
        subresource: str | None = None,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply of one object (field manager ``llmfleet`` unless told another);
        ``subresource`` (e.g. ``status``) applies to that subresource instead."""
        meta = obj.get("metadata", {})
        res = self.resource(obj["apiVersion"], obj["kind"])
        namespaced = bool(res.namespaced)
        if subresource is not None:
            res = res.subresources[subresource]
        kwargs: dict[str, Any] = {
            "body": obj,
            "name": meta["name"],
            "field_manager": field_manager,
            "force_conflicts": force,
            "_request_timeout": self.timeout,
        }
        if namespaced:
            kwargs["namespace"] = meta.get("namespace") or "default"
        if dry_run:
            kwargs["dry_run"] = "All"
        out = self._call(
            f"apply {obj['kind']} {meta.get('name')}", lambda: res.server_side_apply(**kwargs)
        )
        return out.to_dict()  # type: ignore[no-any-return]

    def apply_all(self, objs: Iterable[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
        return [self.apply(o, **kwargs) for o in objs]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Plain create (used where an apply would mask a rejection, e.g. tests of bad CRs)."""
        meta = obj.get("metadata", {})
        res = self.resource(obj["apiVersion"], obj["kind"])
        kwargs: dict[str, Any] = {"body": obj, "_request_timeout": self.timeout}
        if res.namespaced:
            kwargs["namespace"] = meta.get("namespace") or "default"
        out = self._call(f"create {obj['kind']} {meta.get('name')}", lambda: res.create(**kwargs))
        return out.to_dict()  # type: ignore[no-any-return]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        res = self.resource(api_version, kind)
        try:
            self._call(
                f"delete {kind} {name}",
                lambda: res.delete(
                    name=name,
                    namespace=namespace if res.namespaced else None,
                    _request_timeout=self.timeout,
                ),
            )
        except KubeError as err:
            if err.status == 404:
                return False
            raise
        return True

    def ensure_namespace(self, name: str) -> None:
        """Make sure namespace ``name`` exists: nothing is written when it does; a missing
        one is created when :attr:`create_namespaces`, else a :class:`KubeError` naming it."""
        if self.get("v1", "Namespace", name) is not None:
            return
        if not self.create_namespaces:
            raise KubeError(
                f"{self.name}: namespace {name!r} does not exist and this operator does not "
                "create namespaces (llmfleet operator --create-namespaces, chart value "
                f"operator.createNamespaces): create namespace {name} in that cluster"
            )
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ------------------------------------------------------------------ reads

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        try:
            out = self._call(
                f"get {kind} {name}",
                lambda: res.get(
                    name=name,
                    namespace=namespace if res.namespaced else None,
                    _request_timeout=self.timeout,
                ),
            )
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        return out.to_dict()  # type: ignore[no-any-return]

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        res = self.resource(api_version, kind)
        kwargs: dict[str, Any] = {"_request_timeout": self.timeout}
        if res.namespaced and namespace:
            kwargs["namespace"] = namespace
        if label_selector:
            kwargs["label_selector"] = label_selector
        out = self._call(f"list {kind}", lambda: res.get(**kwargs))
        return [i.to_dict() for i in out.items]

    def raw_get(self, path: str, accept: str = "application/json") -> Any:
        """GET an API path and decode the JSON (for Tables, discovery, /version)."""
        request = self.api.param_serialize(
            "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
        )

        def get() -> Any:
            resp = self.api.call_api(*request, _request_timeout=self.timeout)
            resp.read()
            if not 200 <= resp.status <= 299:
                self.api.response_deserialize(resp, {})
            return resp

        resp = self._call(f"GET {path}", get)
        return json.loads(resp.data or b"null")

    def table(
        self, group_version: str, plural: str, namespace: str | None = None
    ) -> dict[str, Any]:
        """The server-side Table ``kubectl get`` prints (with the CRD's printer columns)."""
        base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        return self.raw_get(path, accept="application/json;as=Table;v=v1;g=meta.k8s.io")  # type: ignore[no-any-return]

    def version(self) -> dict[str, Any]:
        return self.raw_get("/version")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ CRDs

    def wait_crds_established(self, names: Iterable[str], timeout: float = 60.0) -> None:
        """Block until every CRD reports Established (or raise after ``timeout``)."""
        ext = client.ApiextensionsV1Api(self.api)
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for name in sorted(pending):
                try:
                    crd = ext.read_custom_resource_definition(name, _request_timeout=self.timeout)
                except ApiException as err:
                    if err.status != 404:
                        raise KubeError(
                            f"{self.name}: read CRD {name}: {explain_api_exception(err)}",
                            err.status,
                        ) from None
                    continue
                conds = {c.type: c.status for c in ((crd.status and crd.status.conditions) or [])}
                if conds.get("Established") == "True":
                    pending.discard(name)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise KubeError(
                    f"{self.name}: CRDs not established after {timeout:.0f}s: {sorted(pending)}"
                )
            time.sleep(0.2)
        self.dynamic.resources.invalidate_cache()


def format_table(table: dict[str, Any], *, with_kind: str | None = None) -> str:
    """Render a server-side Table like ``kubectl get`` does (priority-0 columns)."""
    cols = [
        (i, c)
        for i, c in enumerate(table.get("columnDefinitions", []))
        if c.get("priority", 0) == 0
    ]
    header = [c["name"].upper() for _, c in cols]
    rows = []
    for row in table.get("rows", []):
        cells = []
        for i, _ in cols:
            v = row["cells"][i]
            if i == 0 and with_kind:
                v = f"{with_kind}/{v}"
            cells.append("<none>" if v in (None, "") else str(v))
        rows.append(cells)
    widths = [
        max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(header)
    ]
    lines = ["   ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
