#!/usr/bin/env bash
# Local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager)
# built from source via the Go module proxy. See hack/controlplane/main.go.
#
#   hack/controlplane.sh build            build hack/bin/llmfleet-controlplane and hack/bin/kubectl (cached)
#   hack/controlplane.sh build-controlplane   only hack/bin/llmfleet-controlplane
#   hack/controlplane.sh kubectl          only hack/bin/kubectl (same k8s release; ~30s extra cold)
#   hack/controlplane.sh up DIR [PORT]    start in the background, wait for ready, print kubeconfig path
#   hack/controlplane.sh down DIR         stop the instance started with `up DIR`
#   hack/controlplane.sh status DIR       print whether it is running/ready
#   hack/controlplane.sh version          print the Kubernetes version the module pins
#
# Environment: LLMFLEET_BIN_DIR (default hack/bin), CONTROLPLANE_TIMEOUT
# (seconds to wait in `up`, default 180), GOCACHE/GOMODCACHE as usual.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD_DIR="$ROOT/hack/controlplane"
BIN_DIR="${LLMFLEET_BIN_DIR:-$ROOT/hack/bin}"
CP_BIN="$BIN_DIR/llmfleet-controlplane"
KUBECTL_BIN="$BIN_DIR/kubectl"

# Never download a toolchain, never let a go.work elsewhere in the repo leak
# in, never silently edit go.mod/go.sum.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"

log() { printf '[controlplane.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

k8s_version() {
  awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$MOD_DIR/go.mod"
}

ldflags() {
  local v major minor date info
  v="$(k8s_version)"
  [[ -n "$v" ]] || die "cannot find k8s.io/kubernetes in $MOD_DIR/go.mod"
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  # The release's publication time as recorded by the module proxy (in the
  # module cache after download); a fixed date keeps the link reproducible.
  info="$(cd "$MOD_DIR" && go mod download -json k8s.io/kubernetes 2>/dev/null |
    sed -n 's/.*"Info": *"\([^"]*\)".*/\1/p')" || true
  date="$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$info" 2>/dev/null)" || true
  date="${date:-1970-01-01T00:00:00Z}"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X '$pkg.gitVersion=$v' -X '$pkg.gitMajor=$major' -X '$pkg.gitMinor=$minor'"
    # The release commit is not recorded by the module proxy; leave it empty.
    flags+=" -X '$pkg.gitCommit=' -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$date'"
  done
  printf '%s' "$flags"
}

# up_to_date BIN: true if BIN exists and is newer than every input file.
up_to_date() {
  local bin="$1"
  [[ -x "$bin" ]] || return 1
  local newer
  newer="$(find "$MOD_DIR" "${BASH_SOURCE[0]}" \( -name '*.go' -o -name go.mod -o -name go.sum -o -name controlplane.sh \) -newer "$bin" -print -quit)"
  [[ -z "$newer" ]]
}

# go_build OUT PKG LABEL: go build with a package counter as progress.
go_build() {
  local out="$1" pkg="$2" label="$3" start rc buildlog
  command -v go >/dev/null || die "go not found on PATH (need Go >= 1.24)"
  mkdir -p "$BIN_DIR"
  buildlog="$(mktemp "${TMPDIR:-/tmp}/llmfleet-build.XXXXXX")"
  start=$(date +%s)
  log "building $label ($(k8s_version)) -> $out"
  log "  cold: ~2500 packages, ~5 min on 2 cores (plus module download); warm: seconds"
  set +e
  (cd "$MOD_DIR" && go build -v -ldflags "$(ldflags)" -o "$out.tmp" "$pkg") 2>&1 | tee "$buildlog" |
    awk '/^[a-zA-Z0-9_.\/-]+$/ { n++; if (n % 200 == 0) { printf "[controlplane.sh]   ... %d packages compiled\n", n > "/dev/stderr"; fflush() } }'
  rc=${PIPESTATUS[0]}
  set -e
  if [[ $rc -ne 0 ]]; then
    log "build failed (exit $rc); last lines of output:"
    grep -v '^[a-zA-Z0-9_.\/-]*$' "$buildlog" | tail -40 >&2 || true
    rm -f "$buildlog" "$out.tmp"
    exit "$rc"
  fi
  rm -f "$buildlog"
  mv -f "$out.tmp" "$out"
  log "built $label in $(( $(date +%s) - start ))s"
}

cmd_build_controlplane() {
  if up_to_date "$CP_BIN"; then
    log "$CP_BIN is up to date"
  else
    go_build "$CP_BIN" . llmfleet-controlplane
  fi
}

cmd_kubectl() {
  if up_to_date "$KUBECTL_BIN"; then
    log "$KUBECTL_BIN is up to date"
  else
    go_build "$KUBECTL_BIN" k8s.io/kubernetes/cmd/kubectl kubectl
  fi
}

pid_of() {
  local dir="$1" pid
  [[ -f "$dir/controlplane.pid" ]] || return 1
  pid="$(cat "$dir/controlplane.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q llmfleet-controlplane || return 1
  echo "$pid"
}

cmd_up() {
  [[ $# -ge 1 ]] || die "usage: $0 up DIR [PORT] [extra llmfleet-controlplane flags...]"
  local dir="$1" port="${2:-6443}"
  shift; [[ $# -gt 0 ]] && shift
  cmd_build_controlplane
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if pid="$(pid_of "$dir")"; then
    die "already running in $dir (pid $pid); run: $0 down $dir"
  fi
  rm -f "$dir/ready"
  local timeout="${CONTROLPLANE_TIMEOUT:-180}" start
  start=$(date +%s)
  nohup "$CP_BIN" run --data-dir "$dir" --port "$port" "$@" >"$dir/controlplane.log" 2>&1 </dev/null &
  local pid=$!
  log "started llmfleet-controlplane (pid $pid, port $port), log: $dir/controlplane.log"
  while [[ ! -f "$dir/ready" ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "llmfleet-controlplane exited before becoming ready; last log lines:"
      tail -40 "$dir/controlplane.log" >&2
      exit 1
    fi
    if (( $(date +%s) - start > timeout )); then
      log "not ready after ${timeout}s; stopping it. Last log lines:"
      tail -40 "$dir/controlplane.log" >&2
      kill -TERM "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  log "ready after $(( $(date +%s) - start ))s: server $(cat "$dir/ready")"
  log "  export KUBECONFIG=$dir/kubeconfig"
  echo "$dir/kubeconfig"
}

cmd_down() {
  [[ $# -ge 1 ]] || die "usage: $0 down DIR"
  local dir="$1" pid i
  if ! pid="$(pid_of "$dir")"; then
    log "nothing running in $dir"
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }
    sleep 0.1
  done
  log "still running after 30s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_status() {
  [[ $# -ge 1 ]] || die "usage: $0 status DIR"
  local dir="$1" pid
  if pid="$(pid_of "$dir")"; then
    if [[ -f "$dir/ready" ]]; then
      echo "running (pid $pid), ready: $(cat "$dir/ready"), kubeconfig: $dir/kubeconfig"
    else
      echo "running (pid $pid), not ready yet"
    fi
  else
    echo "not running"
    return 1
  fi
}

main() {
  local sub="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$sub" in
    build) cmd_build_controlplane; cmd_kubectl ;;
    build-controlplane) cmd_build_controlplane ;;
    kubectl) cmd_kubectl ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    version) k8s_version ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
}

main "$@"
