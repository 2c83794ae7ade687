"""The tests' local control plane: :mod:`llmfleet.kube.localcp`, the one launcher of it.

    from support.controlplane import LocalControlPlane

    with LocalControlPlane(tmp_path / "cp") as cp:
        client = kubernetes.config.new_client_from_config(str(cp.kubeconfig))
"""

from __future__ import annotations

from llmfleet.kube.localcp import (
    DEFAULT_BINARY,
    PORTS_PER_INSTANCE,
    ControlPlaneError,
    LocalControlPlane,
    binary_path,
    ensure_binary,
    find_free_port_block,
)

__all__ = [
    "DEFAULT_BINARY",
    "PORTS_PER_INSTANCE",
    "ControlPlaneError",
    "LocalControlPlane",
    "binary_path",
    "ensure_binary",
    "find_free_port_block",
]
