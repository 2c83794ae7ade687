#!/usr/bin/env bash
# Set up everything llmfleet needs from a fresh clone, from the package registries only:
# a Python venv with the project (editable) and its dev tools, and the local Kubernetes
# control plane (plus kube-scheduler and kwok for hack/fleet.sh) built from the Go module
# proxy. Idempotent; warm runs take seconds.
#
#   hack/setup.sh            venv + control plane
#   hack/setup.sh --python   venv only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LLMFLEET_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.llmfleet-installed"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  log "installing llmfleet and dev tools into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi

if [[ "${1:-}" != "--python" ]]; then
  bash hack/controlplane.sh build
  # kube-scheduler + kwok for hack/fleet.sh (a fleet in a box); ~3 min cold on top of the control plane, seconds warm
  bash hack/fleet.sh build
  bash hack/tools.sh all
fi
log "ready: activate with '. $VENV/bin/activate'"
