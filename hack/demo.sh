#!/usr/bin/env bash
# The README's main job (for now): a real local control plane, the llmfleet CRDs and the
# sample fleet, the operator validating it, and what `kubectl get llmfleet` shows.
#
#   bash hack/demo.sh            run, print the fleet, stop everything
#   KEEP=1 bash hack/demo.sh     leave the control plane running (prints how to reach it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash hack/setup.sh
. "${LLMFLEET_VENV:-$ROOT/.venv}/bin/activate"

DIR="${DEMO_DIR:-$ROOT/.tmp/demo}"
bash hack/controlplane.sh down "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR" && mkdir -p "$DIR"   # a fresh cluster every run
bash hack/controlplane.sh up "$DIR" >/dev/null
export KUBECONFIG="$DIR/kubeconfig"
OP_PID=""
cleanup() {
  [[ -n "$OP_PID" ]] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null || true
  if [[ -z "${KEEP:-}" ]]; then bash hack/controlplane.sh down "$DIR" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

llmfleet install --samples -n llmfleet
llmfleet operator --recheck-seconds 2 >"$DIR/operator.log" 2>&1 &
OP_PID=$!

printf 'waiting for the operator to validate the fleet'
for _ in $(seq 1 60); do
  if ! llmfleet get -n llmfleet 2>/dev/null | awk 'NR>1 && /\/[a-z0-9-]+ / && $0 !~ /True|False/ {missing=1} END {exit missing}'; then
    printf '.'; sleep 1
  else
    break
  fi
done
echo
echo "\$ kubectl get llmfleet -n llmfleet"
hack/bin/kubectl get llmfleet -n llmfleet
if [[ -n "${KEEP:-}" ]]; then
  echo; echo "control plane left running: export KUBECONFIG=$KUBECONFIG; stop with: bash hack/controlplane.sh down $DIR"
fi
