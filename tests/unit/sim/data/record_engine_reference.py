"""Record ``engine_reference.json``: the cases of ``test_engine_reference.py`` run on the
twin's engine, recorder, gateway and workload as they were at commit 65b7862 (before the
engine was made faster), with the rest of the tree as it is now.

    python tests/unit/sim/data/record_engine_reference.py

Copies ``operator/`` to a temporary directory, puts those four files of the reference commit
in it, and runs the cases there in a child process (its ``PYTHONPATH`` first). Re-record
when something outside those files changes what the cases do (the API's parsing, the
traces), never to absorb a change of the engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE_COMMIT = "65b7862"
PINNED = ("engine", "metrics", "gateway", "workload")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]

CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
sys.path.insert(0, {unit_sim!r})
import llmfleet.sim.engine as engine
assert engine.__file__.startswith({tmp!r}), engine.__file__
from test_engine_reference import CASES, run_case
out = {{}}
for case in sorted(CASES):
    out[case] = run_case(case)
    s = out[case]
    print(case, s["requests"], s["completed"], s["rejected"], s["reject_reasons"],
          s["spot_interruptions"], s["retried"], s["spilled"], file=sys.stderr)
json.dump(out, open({dest!r}, "w"), sort_keys=True, separators=(",", ":"))
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "operator", Path(tmp), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
        for name in PINNED:
            src = subprocess.run(
                ["git", "show", f"{REFERENCE_COMMIT}:operator/llmfleet/sim/{name}.py"],
                cwd=ROOT, check=True, capture_output=True, text=True).stdout
            (Path(tmp) / "llmfleet" / "sim" / f"{name}.py").write_text(src)
        code = CHILD.format(tests=str(ROOT / "tests"), unit_sim=str(HERE.parent), tmp=tmp,
                            dest=str(HERE / "engine_reference.json"))
        env = {"LLMFLEET_TRACES_DIR": str(ROOT.parent / "shared" / "traces"), **os.environ,
               "PYTHONPATH": tmp}
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp,
                              check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
