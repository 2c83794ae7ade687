"""The router service's configuration file: read, parse, and keep the last good one.

The file is what the operator renders (:mod:`llmfleet.kube.router_config`): either the
ConfigMap manifest itself (``kind: ConfigMap``, the JSON under ``data["router.json"]``) or
that JSON alone (the key as the ConfigMap volume mounts it), YAML or JSON. A tier's
``artefact`` (the fitted router's arrays, an ``.npz``) is a path relative to the file's
folder. :class:`ConfigHolder` keeps the configuration in use: a file that cannot be read
or parsed is logged and the last good configuration stays.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmfleet.routing.models.serving import (
    ConfigError,
    FastHashing,
    Member,
    RouterConfig,
    TierRouter,
    members_from_arrays,
    members_to_arrays,
    parse_config,
)

CONFIG_KEY = "router.json"


def read_document(text: str) -> dict[str, Any]:
    """The configuration JSON from the file's text (a ConfigMap manifest or the JSON)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML or JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"expected an object, got {type(doc).__name__}")
    if doc.get("kind") == "ConfigMap":
        data = doc.get("data") or {}
        if CONFIG_KEY not in data:
            raise ConfigError(f"ConfigMap has no data[{CONFIG_KEY!r}]")
        try:
            inner = json.loads(data[CONFIG_KEY])
        except json.JSONDecodeError as err:
            raise ConfigError(f"data[{CONFIG_KEY!r}]: not valid JSON: {err}") from None
        if not isinstance(inner, dict):
            raise ConfigError(f"data[{CONFIG_KEY!r}]: expected a JSON object")
        return inner
    return doc


def save_artefact(path: Path, members: Sequence[Member]) -> None:
    """Write a tier's fitted router (its members) as the ``.npz`` a config's ``artefact``
    names."""
    arrays: dict[str, Any] = dict(members_to_arrays(members))
    np.savez(path, **arrays)


def load_config(path: Path) -> RouterConfig:
    """Read and parse ``path`` and the artefacts it names; raises :class:`ConfigError` (or
    ``OSError``) naming what is wrong."""
    doc = read_document(path.read_text(encoding="utf-8"))
    members: dict[str, tuple[Member, ...]] = {}
    for name, tier in (doc.get("tiers") or {}).items():
        artefact = tier.get("artefact") if isinstance(tier, dict) else None
        if not isinstance(artefact, str):
            continue
        file = (path.parent / artefact).resolve()
        try:
            with np.load(file, allow_pickle=False) as arrays:
                members[artefact] = members_from_arrays({k: arrays[k] for k in arrays.files})
        except (OSError, ValueError) as err:
            raise ConfigError(f"tiers.{name}.artefact: cannot read {file}: {err}") from None
    return parse_config(doc, members)


@dataclass
class Loaded:
    """A configuration in use, with one featuriser per hashing width."""

    config: RouterConfig
    digest: str
    featurisers: dict[int, FastHashing] = field(default_factory=dict)

    def featuriser(self, tier: TierRouter) -> FastHashing:
        return self.featurisers[tier.bits]


class ConfigHolder:
    """The configuration in use; :meth:`reload` swaps it only for a good one."""

    def __init__(self, path: Path, logger: logging.Logger) -> None:
        self.path = path
        self.logger = logger
        self.current: Loaded | None = None
        self.last_error: str | None = None
        self._seen: str | None = None

    def reload(self) -> bool:
        """Read the file if its bytes changed; True when a new configuration is in use."""
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            return self._fail(f"{self.path}: cannot read: {err.strerror or err}", None)
        digest = hashlib.sha256(raw).hexdigest()[:12]
        if digest == self._seen:
            return False
        try:
            config = load_config(self.path)
        except (ConfigError, OSError, UnicodeDecodeError) as err:
            return self._fail(f"{self.path}: {err}", digest)
        self._seen = digest
        self.current = Loaded(
            config, digest, {t.bits: FastHashing(t.bits) for t in config.tiers.values()}
        )
        self.last_error = None
        self.logger.info(
            "router config %s loaded from %s: tiers %s",
            digest, self.path, ", ".join(sorted(config.tiers)) or "none",
        )  # fmt: skip
        return True

    def _fail(self, message: str, digest: str | None) -> bool:
        if message != self.last_error:
            kept = f"keeping config {self.current.digest}" if self.current else "no config yet"
            self.logger.error("router config not loaded (%s): %s", kept, message)
        self.last_error = message
        self._seen = digest
        return False
