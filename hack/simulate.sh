#!/usr/bin/env bash
# The README's main job: set up (a Python venv from PyPI; no cluster, no Go build) and replay
# the embedded default scenario on the digital twin against every policy, writing the report.
#
#   bash hack/simulate.sh                         all six policies, 3 days, -> sim-report/
#   bash hack/simulate.sh --days 1 --out /tmp/r   any `llmfleet simulate` arguments
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash hack/setup.sh --python
. "${LLMFLEET_VENV:-$ROOT/.venv}/bin/activate"
exec llmfleet simulate "$@"
