#!/usr/bin/env bash
# Third-party tools and CRDs the tests need, from the package registries only (idempotent).
#
#   hack/tools.sh crds        upstream CRDs, pinned, from their Go modules (module proxy):
#                             hack/bin/thirdparty/<name>/*.yaml
#   hack/tools.sh prometheus  prometheus + promtool (Debian package 'prometheus')
#   hack/tools.sh helm        helm, built with 'go install' from the module proxy -> hack/bin/helm
#   hack/tools.sh all         all of the above
#   hack/tools.sh dir NAME    print the directory of one CRD set (after 'crds')
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/hack/bin"
TP="$BIN/thirdparty"
log() { printf '[tools] %s\n' "$*" >&2; }

# name  module@version  path-inside-module  (one CRD set per line; bump versions here only)
CRD_SETS=(
  "gateway-api    sigs.k8s.io/gateway-api@v1.6.3        config/crd/standard"
  "cluster-api    sigs.k8s.io/cluster-api@v1.13.6       config/crd/bases"
  "karpenter      sigs.k8s.io/karpenter@v1.14.1         pkg/apis/crds"
  "envoy-gateway  github.com/envoyproxy/gateway@v1.9.1  charts/gateway-helm/charts/crds/crds/generated"
)
HELM_VERSION="v3.19.5"

crds() {
  mkdir -p "$TP"
  local line name mod sub dir
  for line in "${CRD_SETS[@]}"; do
    read -r name mod sub <<<"$line"
    if [[ -f "$TP/$name/.version" && "$(cat "$TP/$name/.version")" == "$mod" ]]; then
      continue
    fi
    log "CRDs $name from $mod"
    dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    rm -rf "$TP/$name"
    mkdir -p "$TP/$name"
    cp "$dir/$sub"/*.yaml "$TP/$name/"
    chmod u+w "$TP/$name"/*.yaml
    echo "$mod" >"$TP/$name/.version"
  done
}

prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    return 0
  fi
  log "installing prometheus + promtool (Debian package)"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a system service where an init system runs; the tests start their own.
  command -v prometheus >/dev/null && command -v promtool >/dev/null
}

helm() {
  if [[ -x "$BIN/helm" ]] && "$BIN/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then
    return 0
  fi
  log "building helm $HELM_VERSION (go install, module proxy; ~2-4 min cold)"
  mkdir -p "$BIN"
  GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
}

case "${1:-all}" in
  crds) crds ;;
  prometheus) prometheus ;;
  helm) helm ;;
  all) crds; prometheus; helm ;;
  dir) echo "$TP/${2:?name}" ;;
  *) echo "usage: $0 crds|prometheus|helm|all|dir NAME" >&2; exit 2 ;;
esac
