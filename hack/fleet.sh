#!/usr/bin/env bash
# A fleet in a box: the local control plane plus what a real cluster would add so that the
# operator's model Deployments get Running pods that answer requests, all on 127.0.0.1.
#
#   hack/fleet.sh build        hack/bin/kube-scheduler (the hack/controlplane module, same
#                              k8s.io/kubernetes release), hack/bin/kwok (hack/kwok module,
#                              sigs.k8s.io/kwok) and kwok's stage config (cached)
#   hack/fleet.sh build traefik  hack/bin/traefik (hack/traefik module, Traefik v3.6.x; cached;
#                              not part of plain `build` nor of hack/setup.sh: ~18 min cold,
#                              11 s warm, see hack/traefik/README.md); `build all`: all three
#   hack/fleet.sh up [DIR]     start everything (default DIR .tmp/fleet), print the URLs
#   hack/fleet.sh down [DIR]   stop everything started by `up DIR`
#   hack/fleet.sh status [DIR] what is running
#
# What runs (each a child of nothing but this script's `up`, pid files in DIR/pids):
#   llmfleet-controlplane  etcd + kube-apiserver + kube-controller-manager, the Service
#                          range on loopback ($FLEET_SERVICE_CIDR, default 127.0.100.0/24)
#   kube-scheduler         binds the pods to nodes (no leader election, admin kubeconfig,
#                          HTTPS on 127.0.0.1:FLEET_PORT+4)
#   kwok                   manages every Node (fake kubelet): Nodes Ready, their pods
#                          Running with fake pod IPs (--cidr; never sent any traffic)
#   harness                python -m llmfleet.box.harness: an emulator per Running model pod
#                          in $FLEET_NAMESPACE, a listener on each Service's ClusterIP:port
#                          (kube-proxy's part), Prometheus file_sd of the emulators
#   prometheus             (if installed: hack/tools.sh prometheus) scraping that file_sd
#   traefik                (FLEET_TRAEFIK, see below) the Gateway API data plane: Traefik's
#                          Kubernetes Gateway provider, the upstream Gateway API CRDs
#                          (hack/tools.sh crds), GatewayClass $FLEET_GATEWAY_CLASS and Gateway
#                          $FLEET_NAMESPACE/$FLEET_GATEWAY (an HTTP listener on
#                          127.0.0.1:$FLEET_GATEWAY_PORT, routes from all namespaces). Backends
#                          are the Services' ClusterIP:port (nativeLBByDefault), where the
#                          harness listens, not their EndpointSlices (kwok's fake pod IPs).
#                          /metrics (request counters labelled tenant, tier, origin_region from
#                          the headers x-tenant-id, x-tier, x-origin-region), /ping and /api on
#                          127.0.0.1:$FLEET_TRAEFIK_ADMIN_PORT.
#   router                 (with Traefik) `llmfleet router serve` in front of it, the box's front
#                          door: 127.0.0.1:$FLEET_ROUTER_PORT -> Traefik's web entrypoint; sets
#                          x-gateway-model-name (the plan's routes match it) and exports the
#                          gateway's demand as Envoy AI Gateway does (gen_ai_client_token_usage
#                          from the upstream's usage,
#                          gen_ai_server_request_duration_seconds, ..._time_to_first_token_seconds;
#                          labels tenant_id, tier, origin_region from the headers x-tenant-id,
#                          x-tier, x-origin-region: metricsRequestHeaderAttributes) on
#                          127.0.0.1:$FLEET_ROUTER_METRICS_PORT/metrics. Prometheus job gateway
#                          scrapes it, origin_region renamed region (one Prometheus plays every
#                          region's: where each region has its own, that is its `region`
#                          external label), so the default envoy-ai-gateway query profile works.
#   operator               (FLEET_OPERATOR=1) `llmfleet operator` in apply mode on the box: the
#                          CRDs and the box's fleet (python -m llmfleet.box.sample apply: Regions
#                          box-east and box-west with a static pool of kwok Nodes, LLMModel tiny,
#                          SLATier, TenantQuota, FleetPolicy box planning every
#                          $FLEET_PLAN_INTERVAL s from this Prometheus, vllm query profile), its
#                          metrics on 127.0.0.1:$FLEET_OPERATOR_METRICS_PORT, log DIR/operator.log
#
# Environment: FLEET_PORT (apiserver port, default 6443; the control plane takes it..+3),
# FLEET_SERVICE_CIDR, FLEET_NAMESPACE (default llmfleet), FLEET_PROMETHEUS (1; 0 = off),
# FLEET_PROMETHEUS_PORT (9090), FLEET_SCRAPE_INTERVAL (5s), FLEET_POD_CIDR (kwok's fake pod
# IPs, 10.244.0.0/16), LLMFLEET_VENV (.venv), FLEET_TIMEOUT (seconds per wait, 120).
# FLEET_TRAEFIK: auto (default: start Traefik if hack/bin/traefik was built, rebuilding it when
# hack/traefik changed), 1 (build it if needed and start it), 0 (off). FLEET_GATEWAY_PORT
# (Traefik's entrypoint `web` = the Gateway's listener port, FLEET_PORT+5),
# FLEET_TRAEFIK_ADMIN_PORT (entrypoint `traefik`, FLEET_PORT+6), FLEET_GATEWAY (Gateway name,
# llmfleet-gateway), FLEET_GATEWAY_CLASS (llmfleet-traefik). FLEET_ROUTER_PORT (FLEET_PORT+8),
# FLEET_ROUTER_METRICS_PORT (FLEET_PORT+10), FLEET_TRAEFIK_LOG_LEVEL (INFO; DEBUG logs every request).
# FLEET_OPERATOR (0; 1: start the operator, needs Prometheus), FLEET_PLAN_INTERVAL (the box
# FleetPolicy's intervalSeconds, 30, at least 30), FLEET_OPERATOR_METRICS_PORT (FLEET_PORT+7).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/hack/bin"
CP_MOD="$ROOT/hack/controlplane"
KWOK_MOD="$ROOT/hack/kwok"
SCHED_BIN="$BIN_DIR/kube-scheduler"
KWOK_BIN="$BIN_DIR/kwok"
STAGES="$BIN_DIR/thirdparty/kwok/stages.yaml"
TRAEFIK_MOD="$ROOT/hack/traefik"
TRAEFIK_BIN="$BIN_DIR/traefik"
KUBECTL="$BIN_DIR/kubectl"
# kwok's own lifecycle stages, as kwokctl uses them (paths inside the kwok module)
KWOK_STAGES=(
  kustomize/stage/node/fast/node-initialize.yaml
  kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml
  kustomize/stage/pod/fast/pod-complete.yaml
  kustomize/stage/pod/fast/pod-delete.yaml
)

FLEET_PORT="${FLEET_PORT:-6443}"
FLEET_SERVICE_CIDR="${FLEET_SERVICE_CIDR:-127.0.100.0/24}"
FLEET_NAMESPACE="${FLEET_NAMESPACE:-llmfleet}"
FLEET_PROMETHEUS="${FLEET_PROMETHEUS:-1}"
FLEET_PROMETHEUS_PORT="${FLEET_PROMETHEUS_PORT:-9090}"
FLEET_SCRAPE_INTERVAL="${FLEET_SCRAPE_INTERVAL:-5s}"
FLEET_POD_CIDR="${FLEET_POD_CIDR:-10.244.0.0/16}"
FLEET_TIMEOUT="${FLEET_TIMEOUT:-120}"
FLEET_TRAEFIK="${FLEET_TRAEFIK:-auto}"
FLEET_GATEWAY_PORT="${FLEET_GATEWAY_PORT:-$((FLEET_PORT + 5))}"
FLEET_TRAEFIK_ADMIN_PORT="${FLEET_TRAEFIK_ADMIN_PORT:-$((FLEET_PORT + 6))}"
FLEET_GATEWAY="${FLEET_GATEWAY:-llmfleet-gateway}"
FLEET_GATEWAY_CLASS="${FLEET_GATEWAY_CLASS:-llmfleet-traefik}"
VENV="${LLMFLEET_VENV:-$ROOT/.venv}"
FLEET_OPERATOR="${FLEET_OPERATOR:-0}"
FLEET_PLAN_INTERVAL="${FLEET_PLAN_INTERVAL:-30}"
FLEET_OPERATOR_METRICS_PORT="${FLEET_OPERATOR_METRICS_PORT:-$((FLEET_PORT + 7))}"
FLEET_ROUTER_PORT="${FLEET_ROUTER_PORT:-$((FLEET_PORT + 8))}"
FLEET_ROUTER_METRICS_PORT="${FLEET_ROUTER_METRICS_PORT:-$((FLEET_PORT + 10))}"
# The router's metricsRequestHeaderAttributes (Envoy AI Gateway's format)
ROUTER_HEADER_ATTRIBUTES="x-tenant-id:tenant.id,x-tier:tier,x-origin-region:origin.region"

log() { printf '[fleet.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------------------ build

gobuild_env() { export GOTOOLCHAIN=local GOWORK=off GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"; }

# newer_than BIN FILE...: true if BIN exists and is newer than every FILE
newer_than() {
  local bin="$1" f
  shift
  [[ -e "$bin" ]] || return 1
  for f in "$@"; do
    [[ "$bin" -nt "$f" ]] || return 1
  done
}

# The version ldflags hack/controlplane.sh sets, so /version and the logs name the release.
k8s_ldflags() {
  local v major minor flags="-s -w" pkg
  v="$(bash "$ROOT/hack/controlplane.sh" version)"
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X '$pkg.gitVersion=$v' -X '$pkg.gitMajor=$major' -X '$pkg.gitMinor=$minor'"
    flags+=" -X '$pkg.gitTreeState=clean'"
  done
  printf '%s' "$flags"
}

build_scheduler() {
  if newer_than "$SCHED_BIN" "$CP_MOD/go.mod" "$CP_MOD/go.sum"; then
    return 0
  fi
  local start=$SECONDS
  log "building kube-scheduler ($(bash "$ROOT/hack/controlplane.sh" version), hack/controlplane module) -> $SCHED_BIN"
  mkdir -p "$BIN_DIR"
  (gobuild_env && cd "$CP_MOD" && go build -ldflags "$(k8s_ldflags)" -o "$SCHED_BIN.tmp" k8s.io/kubernetes/cmd/kube-scheduler)
  mv -f "$SCHED_BIN.tmp" "$SCHED_BIN"
  log "built kube-scheduler in $((SECONDS - start))s"
}

kwok_version() { awk '$1 == "sigs.k8s.io/kwok" { print $2; exit }' "$KWOK_MOD/go.mod"; }

# go_at_least GOMOD: the local Go is at least the go.mod's go line (GOTOOLCHAIN=local: an
# older Go would fail with a less clear message)
go_at_least() {
  local want have
  want="$(awk '$1 == "go" { print $2; exit }' "$1")"
  have="$(go env GOVERSION)"; have="${have#go}"
  [[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" == "$want" ]] ||
    die "$1 needs Go >= $want (local: go$have)"
}

build_kwok() {
  if ! newer_than "$KWOK_BIN" "$KWOK_MOD/go.mod" "$KWOK_MOD/go.sum"; then
    go_at_least "$KWOK_MOD/go.mod"
    local start=$SECONDS
    log "building kwok $(kwok_version) (hack/kwok module) -> $KWOK_BIN"
    mkdir -p "$BIN_DIR"
    (gobuild_env && cd "$KWOK_MOD" && go build -ldflags "-s -w" -o "$KWOK_BIN.tmp" sigs.k8s.io/kwok/cmd/kwok)
    mv -f "$KWOK_BIN.tmp" "$KWOK_BIN"
    log "built kwok in $((SECONDS - start))s"
  fi
  if newer_than "$STAGES" "$KWOK_MOD/go.mod" "${BASH_SOURCE[0]}"; then
    return 0
  fi
  local dir f
  dir="$(gobuild_env && cd "$KWOK_MOD" && go mod download -json sigs.k8s.io/kwok |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$(dirname "$STAGES")"
  {
    echo "# kwok $(kwok_version) stages (from its module: ${KWOK_STAGES[*]}); written by hack/fleet.sh"
    for f in "${KWOK_STAGES[@]}"; do
      echo "---"
      cat "$dir/$f"
    done
  } >"$STAGES.tmp"
  mv -f "$STAGES.tmp" "$STAGES"
  log "kwok stages -> $STAGES"
}

traefik_version() { awk '$1 == "github.com/traefik/traefik/v3" { print $2; exit }' "$TRAEFIK_MOD/go.mod"; }

# Traefik's cmd/traefik package built inside the wrapper module (its replace directives apply
# only there; `go install ...@version` refuses them)
build_traefik() {
  if newer_than "$TRAEFIK_BIN" "$TRAEFIK_MOD/go.mod" "$TRAEFIK_MOD/go.sum"; then
    return 0
  fi
  go_at_least "$TRAEFIK_MOD/go.mod"
  local start=$SECONDS v
  v="$(traefik_version)"
  log "building traefik $v (hack/traefik module) -> $TRAEFIK_BIN (minutes cold)"
  mkdir -p "$BIN_DIR"
  (gobuild_env && cd "$TRAEFIK_MOD" && go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$v" \
    -o "$TRAEFIK_BIN.tmp" github.com/traefik/traefik/v3/cmd/traefik)
  mv -f "$TRAEFIK_BIN.tmp" "$TRAEFIK_BIN"
  log "built traefik in $((SECONDS - start))s"
}

cmd_build() {
  command -v go >/dev/null || die "go not found on PATH"
  case "${1:-}" in
    traefik) build_traefik; return ;;
    all) build_traefik ;;
    "") ;;
    *) die "unknown build target: $1 (traefik, all)" ;;
  esac
  build_scheduler
  build_kwok
}

# traefik_wanted: FLEET_TRAEFIK=1, or auto and the binary exists
traefik_wanted() {
  case "$FLEET_TRAEFIK" in
    1) return 0 ;;
    0) return 1 ;;
    auto) [[ -x "$TRAEFIK_BIN" ]] ;;
    *) die "FLEET_TRAEFIK must be auto, 1 or 0 (is $FLEET_TRAEFIK)" ;;
  esac
}

# ------------------------------------------------------------------------------ up/down

pidfile() { echo "$DIR/pids/$1.pid"; }

# alive NAME: print the pid of NAME if it runs (and is what we started: cmdline matches)
alive() {
  local f pid want
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  read -r pid want <"$f" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want" || return 1
  echo "$pid"
}

# start NAME MARKER CMD...: start CMD in the background, log DIR/NAME.log; MARKER is a
# string of its command line that `alive` checks against pid reuse
start() {
  local name="$1" marker="$2"
  shift 2
  if alive "$name" >/dev/null; then
    die "$name is already running ($(pidfile "$name")); run: $0 down $DIR"
  fi
  nohup "$@" >"$DIR/$name.log" 2>&1 </dev/null &
  echo "$! $marker" >"$(pidfile "$name")"
  log "started $name (pid $!), log $DIR/$name.log"
}

# stop NAME: SIGTERM, SIGKILL after 20s
stop() {
  local name="$1" pid i
  if pid="$(alive "$name")"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name still running after 20s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name"
  fi
  rm -f "$(pidfile "$name")"
}

# wait_until WHAT CMD...: poll CMD until it succeeds (FLEET_TIMEOUT)
wait_until() {
  local what="$1" start=$SECONDS
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start > FLEET_TIMEOUT)); then
      log "$what not ready after ${FLEET_TIMEOUT}s"
      return 1
    fi
    sleep 0.3
  done
}

# start_traefik KUBECONFIG: the Gateway API CRDs, GatewayClass + Gateway, then Traefik with its
# Kubernetes Gateway provider; waits until it answers /ping and the Gateway is Programmed
start_traefik() {
  local kubeconfig="$1" crds gw="$DIR/traefik/gateway.yaml"
  [[ -x "$KUBECTL" ]] || die "no $KUBECTL (run: bash hack/controlplane.sh build)"
  bash "$ROOT/hack/tools.sh" crds
  crds="$(bash "$ROOT/hack/tools.sh" dir gateway-api)"
  # server-side: the CRDs are too large for kubectl's last-applied annotation
  "$KUBECTL" --kubeconfig="$kubeconfig" apply --server-side --force-conflicts -f "$crds" >/dev/null
  "$KUBECTL" --kubeconfig="$kubeconfig" wait --for=condition=Established --timeout="${FLEET_TIMEOUT}s" \
    crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
    crd/httproutes.gateway.networking.k8s.io crd/grpcroutes.gateway.networking.k8s.io \
    crd/referencegrants.gateway.networking.k8s.io crd/backendtlspolicies.gateway.networking.k8s.io >/dev/null
  cat >"$gw" <<EOF
# written by hack/fleet.sh: the Gateway the fleet's HTTPRoutes attach to (parentRefs
# name: $FLEET_GATEWAY, namespace: $FLEET_NAMESPACE), programmed by Traefik
apiVersion: v1
kind: Namespace
metadata:
  name: $FLEET_NAMESPACE
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: $FLEET_GATEWAY_CLASS
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: $FLEET_GATEWAY
  namespace: $FLEET_NAMESPACE
spec:
  gatewayClassName: $FLEET_GATEWAY_CLASS
  listeners:
    - name: http
      protocol: HTTP
      port: $FLEET_GATEWAY_PORT   # = Traefik's entrypoint web
      allowedRoutes:
        namespaces:
          from: All
EOF
  "$KUBECTL" --kubeconfig="$kubeconfig" apply -f "$gw" >/dev/null
  # KUBECONFIG: the provider's cluster-external client from the admin kubeconfig (it takes
  # precedence over --providers.kubernetesgateway.endpoint/token). No version check, no
  # anonymous usage report: nothing leaves the machine.
  start traefik "$TRAEFIK_BIN" env KUBECONFIG="$kubeconfig" "$TRAEFIK_BIN" \
    --global.checkNewVersion=false --global.sendAnonymousUsage=false \
    --log.level="${FLEET_TRAEFIK_LOG_LEVEL:-INFO}" --log.noColor=true \
    --entryPoints.web.address="127.0.0.1:$FLEET_GATEWAY_PORT" \
    --entryPoints.traefik.address="127.0.0.1:$FLEET_TRAEFIK_ADMIN_PORT" \
    --ping=true --api=true --api.insecure=true --api.dashboard=false \
    --providers.kubernetesGateway=true \
    --providers.kubernetesGateway.nativeLBByDefault=true \
    --providers.kubernetesGateway.statusAddress.ip=127.0.0.1 \
    --metrics.prometheus=true --metrics.prometheus.addRoutersLabels=true \
    --metrics.prometheus.headerLabels.tenant=x-tenant-id \
    --metrics.prometheus.headerLabels.tier=x-tier \
    --metrics.prometheus.headerLabels.origin_region=x-origin-region
  wait_until "traefik" curl -fsS --max-time 2 "http://127.0.0.1:$FLEET_TRAEFIK_ADMIN_PORT/ping" ||
    { running_or_die traefik; false; }
  "$KUBECTL" --kubeconfig="$kubeconfig" wait --for=condition=Programmed --timeout="${FLEET_TIMEOUT}s" \
    -n "$FLEET_NAMESPACE" "gateway/$FLEET_GATEWAY" >/dev/null || {
    log "Gateway $FLEET_NAMESPACE/$FLEET_GATEWAY not Programmed; last lines of $DIR/traefik.log:"
    tail -30 "$DIR/traefik.log" >&2
    false
  }
}

# start_router: `llmfleet router serve` in front of Traefik (no routing tiers: every request
# keeps its model), the gen_ai metrics on FLEET_ROUTER_METRICS_PORT. The model header it sets
# is x-gateway-model-name, the one the plan's HTTPRoutes match (render.render_httproutes; a
# routing tier's routes match x-ai-eg-model)
start_router() {
  local config="$DIR/router/router.json"
  mkdir -p "$DIR/router"
  # written by hack/fleet.sh: no tier routes (the operator's router ConfigMap would add them)
  echo '{"apiVersion": "llmfleet.dev/router/v1", "tiers": {}, "headers": {"model": "x-gateway-model-name"}}' >"$config"
  PYTHONUNBUFFERED=1 start router "llmfleet.cli router serve" "$VENV/bin/python" -m llmfleet.cli \
    router serve --config "$config" --upstream "http://127.0.0.1:$FLEET_GATEWAY_PORT" \
    --host 127.0.0.1 --port "$FLEET_ROUTER_PORT" --metrics-port "$FLEET_ROUTER_METRICS_PORT" \
    --metrics-header-attributes "$ROUTER_HEADER_ATTRIBUTES"
  wait_until "router" curl -fsS --max-time 2 "http://127.0.0.1:$FLEET_ROUTER_PORT/healthz" ||
    { running_or_die router; false; }
}

# start_operator KUBECONFIG PROM_URL [GATEWAY]: the CRDs and the box's fleet, then
# `llmfleet operator` (apply mode: the FleetPolicy says so) watching $FLEET_NAMESPACE
start_operator() {
  local kubeconfig="$1" prom_url="$2" gateway="${3:-}"
  [[ -n "$prom_url" ]] || die "FLEET_OPERATOR=1 needs Prometheus (FLEET_PROMETHEUS=1, bash hack/tools.sh prometheus)"
  "$VENV/bin/python" -m llmfleet.box.sample apply --kubeconfig "$kubeconfig" \
    --namespace "$FLEET_NAMESPACE" --prometheus "$prom_url" --interval "$FLEET_PLAN_INTERVAL" \
    ${gateway:+--gateway "$gateway"} >"$DIR/sample.log" 2>&1 ||
    { log "applying the box's fleet failed:"; cat "$DIR/sample.log" >&2; false; }
  PYTHONUNBUFFERED=1 start operator "llmfleet.cli operator" env KUBECONFIG="$kubeconfig" \
    "$VENV/bin/python" -m llmfleet.cli operator -n "$FLEET_NAMESPACE" --log-format plain \
    --plan-tick-seconds 2 --recheck-seconds 10 --metrics-port "$FLEET_OPERATOR_METRICS_PORT"
  wait_until "operator" curl -fsS --max-time 2 "http://127.0.0.1:$FLEET_OPERATOR_METRICS_PORT/metrics" ||
    { running_or_die operator; false; }
}

running_or_die() {
  alive "$1" >/dev/null && return 0
  log "$1 exited; last lines of $DIR/$1.log:"
  tail -30 "$DIR/$1.log" >&2 || true
  return 1
}

cmd_up() {
  DIR="${1:-$ROOT/.tmp/fleet}"
  mkdir -p "$DIR/pids" "$DIR/harness" "$DIR/prometheus" "$DIR/traefik"
  DIR="$(cd "$DIR" && pwd)"
  [[ -x "$VENV/bin/python" ]] || die "no venv at $VENV (run hack/setup.sh --python)"
  local name
  for name in kube-scheduler kwok harness prometheus traefik router operator; do
    if alive "$name" >/dev/null; then die "$name is already running in $DIR; run: $0 down $DIR"; fi
  done
  if bash "$ROOT/hack/controlplane.sh" status "$DIR/cp" >/dev/null 2>&1; then
    die "the control plane is already running in $DIR/cp; run: $0 down $DIR"
  fi
  cmd_build
  local with_traefik=0
  if traefik_wanted; then with_traefik=1; build_traefik; fi
  UP_OK=0
  trap '[[ $UP_OK == 1 ]] || { log "up failed; stopping what was started"; cmd_down "$DIR"; }' EXIT

  local kubeconfig
  kubeconfig="$(bash "$ROOT/hack/controlplane.sh" up "$DIR/cp" "$FLEET_PORT" \
    "--service-cluster-ip-range=$FLEET_SERVICE_CIDR")"

  start kube-scheduler "$SCHED_BIN" "$SCHED_BIN" --kubeconfig="$kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=$((FLEET_PORT + 4))
  start kwok "$KWOK_BIN" "$KWOK_BIN" --kubeconfig="$kubeconfig" --config="$STAGES" \
    --manage-all-nodes=true --node-lease-duration-seconds=40 --cidr="$FLEET_POD_CIDR"

  local targets="$DIR/prometheus/targets.json"
  PYTHONUNBUFFERED=1 start harness "llmfleet.box.harness" "$VENV/bin/python" -m llmfleet.box.harness \
    --kubeconfig "$kubeconfig" --namespace "$FLEET_NAMESPACE" --workdir "$DIR/harness" \
    --file-sd "$targets" --python "$VENV/bin/python"
  wait_until "harness" test -f "$DIR/harness/ready" || { running_or_die harness; false; }

  local prom_url=""
  if [[ "$FLEET_PROMETHEUS" == 1 ]] && command -v prometheus >/dev/null; then
    cat >"$DIR/prometheus/prometheus.yml" <<EOF
# written by hack/fleet.sh: the harness's emulators, as a PodMonitor would find vLLM pods
global:
  scrape_interval: $FLEET_SCRAPE_INTERVAL
  evaluation_interval: $FLEET_SCRAPE_INTERVAL
scrape_configs:
  - job_name: vllm
    file_sd_configs:
      - files: ["$targets"]
        refresh_interval: $FLEET_SCRAPE_INTERVAL
EOF
    [[ $with_traefik == 0 ]] || cat >>"$DIR/prometheus/prometheus.yml" <<EOF
  # the gateway's gen_ai series (the router in front of Traefik); the request's origin
  # (header label origin_region) becomes region, as each region's Prometheus external label
  - job_name: gateway
    static_configs:
      - targets: ["127.0.0.1:$FLEET_ROUTER_METRICS_PORT"]
    metric_relabel_configs:
      - source_labels: [origin_region]
        regex: (.+)
        target_label: region
      - regex: origin_region
        action: labeldrop
EOF
    start prometheus prometheus "$(command -v prometheus)" \
      --config.file="$DIR/prometheus/prometheus.yml" --storage.tsdb.path="$DIR/prometheus/data" \
      --web.listen-address="127.0.0.1:$FLEET_PROMETHEUS_PORT"
    prom_url="http://127.0.0.1:$FLEET_PROMETHEUS_PORT"
    wait_until "prometheus" curl -fsS --max-time 2 "$prom_url/-/ready" || { running_or_die prometheus; false; }
  elif [[ "$FLEET_PROMETHEUS" == 1 ]]; then
    log "prometheus not installed (bash hack/tools.sh prometheus); not started"
  fi
  local gateway_url="" traefik_admin=""
  if [[ $with_traefik == 1 ]]; then
    start_traefik "$kubeconfig"
    gateway_url="http://127.0.0.1:$FLEET_GATEWAY_PORT"
    traefik_admin="http://127.0.0.1:$FLEET_TRAEFIK_ADMIN_PORT"
    running_or_die traefik
    start_router
    gateway_url="http://127.0.0.1:$FLEET_ROUTER_PORT"
  fi
  local operator_line="(not running: FLEET_OPERATOR=1)"
  if [[ "$FLEET_OPERATOR" == 1 ]]; then
    start_operator "$kubeconfig" "$prom_url" ${gateway_url:+"$FLEET_NAMESPACE/$FLEET_GATEWAY"}
    operator_line="apply mode, FleetPolicy $FLEET_NAMESPACE/box every ${FLEET_PLAN_INTERVAL}s, metrics http://127.0.0.1:$FLEET_OPERATOR_METRICS_PORT/metrics, log $DIR/operator.log"
    running_or_die operator
  fi
  for name in kube-scheduler kwok harness; do running_or_die "$name"; done
  UP_OK=1
  local traefik_line="(not running)"
  [[ -z "$traefik_admin" ]] ||
    traefik_line="http://127.0.0.1:$FLEET_GATEWAY_PORT (Gateway listener), $traefik_admin/metrics, $traefik_admin/api/http/routers, log $DIR/traefik.log"
  local router_line="(not running: with Traefik only)"
  [[ -z "$traefik_admin" ]] ||
    router_line="gen_ai metrics http://127.0.0.1:$FLEET_ROUTER_METRICS_PORT/metrics (Prometheus job gateway), log $DIR/router.log"

  cat <<EOF
fleet up in $DIR
  apiserver:   $(cat "$DIR/cp/ready")
  kubeconfig:  export KUBECONFIG=$kubeconfig
  services:    ClusterIPs in $FLEET_SERVICE_CIDR (namespace $FLEET_NAMESPACE), answered by the harness
  harness:     $DIR/harness/state.json (emulators, listeners), log $DIR/harness.log
  file_sd:     $targets
  prometheus:  ${prom_url:-(not running)}
  gateway:     ${gateway_url:-(Traefik not started: FLEET_TRAEFIK=1, or bash hack/fleet.sh build traefik)}${gateway_url:+ (the router, in front of Traefik $(traefik_version): Gateway $FLEET_NAMESPACE/$FLEET_GATEWAY, class $FLEET_GATEWAY_CLASS)}
  traefik:     $traefik_line
  router:      $router_line
  operator:    $operator_line
  stop:        bash hack/fleet.sh down $DIR
EOF
}

cmd_down() {
  DIR="${1:-$ROOT/.tmp/fleet}"
  [[ -d "$DIR" ]] || { log "nothing in $DIR"; return 0; }
  DIR="$(cd "$DIR" && pwd)"
  local name
  for name in operator router traefik prometheus harness kwok kube-scheduler; do stop "$name"; done
  bash "$ROOT/hack/controlplane.sh" down "$DIR/cp"
}

cmd_status() {
  DIR="${1:-$ROOT/.tmp/fleet}"
  local name pid rc=0
  for name in kube-scheduler kwok harness prometheus traefik router operator; do
    if pid="$(alive "$name")"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
  done
  bash "$ROOT/hack/controlplane.sh" status "$DIR/cp" || rc=$?
  return "$rc"
}

main() {
  local sub="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$sub" in
    build) cmd_build "$@" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
}

main "$@"
