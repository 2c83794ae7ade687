#!/usr/bin/env bash
# The project's test command: set up, check, test. From a fresh clone:  bash hack/test.sh
#
# Runs: CRD drift check, ruff, mypy (strict on the pure core), the import contract,
# then pytest: the unit tier and the integration tier against a real kube-apiserver +
# etcd + controller-manager built from hack/controlplane. Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash hack/setup.sh
. "${LLMFLEET_VENV:-$ROOT/.venv}/bin/activate"

step() { printf '\n== %s\n' "$*"; }
step "CRDs match the API types";   llmfleet crds --check
step "chart files (dashboards, rules, CRD copy) match"; llmfleet dashboards --check
step "ruff";                        ruff check operator tests
step "mypy";                        mypy
step "import contract";             lint-imports
step "pytest";                      python -m pytest "$@"
