#!/usr/bin/env bash
# The GPU measurements of issue 13 in one script, under 5 minutes on one GPU.
#
#   benchmarks/gpu.sh                # on a machine with CUDA
#   benchmarks/gpu.sh --device cpu --tiny   # checks the script itself on a CPU
#
# 1. the CUDA tests (tests/test_population.py -k cuda: members on the GPU give their single
#    GPU trainings; a population of 128 trains);
# 2. trials/hour on grid25 with the toy nets (3×128, benchmarks/population.py): one trial at
#    a time, `--workers 4` sharing the GPU (skipped, with the reason, where this branch has
#    no --workers), and `--population 8, 32, 128`;
# 3. CUDA graphs for the one-trial step (benchmarks/cuda_graphs.py);
# 4. GPU utilisation meanwhile: `nvidia-smi --query-gpu=utilization.gpu` every 200 ms in
#    the background, mean and max over the run.
# Before a GPU session, run benchmarks/gpu_wheels.sh here and carry ".whl" (the GPU image has
# torch but not Optuna or pydantic). Prints one line of JSON (also written to benchmarks/results/gpu.json, or $OUT/gpu.json
# when $OUT is set). Python: $PYTHON, else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
TINY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "usage: benchmarks/gpu.sh [--device cuda|cpu] [--tiny]" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# On the GPU image: Optuna and pydantic from the wheels benchmarks/gpu_wheels.sh fetched
# (carried as .whl), and this project itself (its plugins are entry points) into /tmp
if [ -d .whl ] && ! "$PY" -c "import optuna, pydantic" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gan-site .whl/*.whl || exit 3
  export PYTHONPATH="/tmp/gan-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import importlib.metadata as m; m.version('gan-pipeline')" 2>/dev/null; then
  # no build (the image's setuptools may predate pyproject's license string): the
  # distribution's metadata and entry points, and the two packages linked from here
  "$PY" - <<'PYEOF' || exit 3
import pathlib, tomllib
root, site = pathlib.Path.cwd(), pathlib.Path("/tmp/gan-project")
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
info = site / f"gan_pipeline-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(
    f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
)
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
    for group, items in project["entry-points"].items()
))
for package, folder in (("pipeline", "pipeline"), ("pipeline_plugins", "plugins")):
    if not (site / package).exists():
        (site / package).symlink_to(root / folder)
PYEOF
  export PYTHONPATH="/tmp/gan-project${PYTHONPATH:+:$PYTHONPATH}"
fi
export MPLBACKEND=Agg
RESULTS="${OUT:-benchmarks/results}"
mkdir -p "$RESULTS"
WORK="$(mktemp -d)"
trap 'kill "$SMI_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
SMI_PID=""

if [ "$TINY" = 1 ]; then
  BENCH=(--population 2 4 --steps 4 --width 16 --trials-one 2 --fill 1 --rounds 1 --workers 4)
  GRAPH=(--steps 3 --width 16)
else
  # 200 steps, 4 evaluations per trial; one-at-a-time on 4 trials, each population on K
  BENCH=(--population 8 32 128 --steps 200 --width 128 --trials-one 4 --fill 1 --rounds 1 --workers 4)
  GRAPH=(--steps 200 --width 128)
fi

if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 \
    > "$WORK/smi.csv" 2>/dev/null &
  SMI_PID=$!
fi

SECONDS=0
# 1. the CUDA tests (they skip without CUDA: the count says so)
CI=true timeout 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_population.py -k cuda \
  -rs > "$WORK/tests.txt" 2>&1
TESTS_RC=$?
TESTS_S=$SECONDS
# 2. trials/hour
timeout 180 "$PY" benchmarks/population.py --device "$DEVICE" --tracking auto "${BENCH[@]}" \
  --out "$WORK/population.json" > "$WORK/population.txt" 2>&1
BENCH_RC=$?
# 3. CUDA graphs
timeout 45 "$PY" benchmarks/cuda_graphs.py --device "$DEVICE" "${GRAPH[@]}" \
  > "$WORK/graphs.json" 2> "$WORK/graphs.txt"
GRAPH_RC=$?
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null

"$PY" - "$WORK" "$DEVICE" "$TESTS_RC" "$TESTS_S" "$BENCH_RC" "$GRAPH_RC" "$SECONDS" "$RESULTS" <<'PYEOF'
import json, re, sys
from pathlib import Path

work, device, tests_rc, tests_s, bench_rc, graph_rc, total_s, results = sys.argv[1:]
work = Path(work)

def tail(name, n=400):
    path = work / name
    return path.read_text()[-n:] if path.exists() else ""

summary = tail("tests.txt", 2000).strip().splitlines()
counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary[-1] if summary else "")}
out = {
    "device": device,
    "cuda_tests": {"rc": int(tests_rc), "seconds": int(tests_s), **counts},
    "total_s": int(total_s),
}
if int(tests_rc) not in (0, 5) and not counts.get("skipped"):
    out["cuda_tests"]["tail"] = tail("tests.txt")
pop = work / "population.json"
if pop.exists():
    data = json.loads(pop.read_text())
    out["trials_per_hour"] = data["trials_per_hour"]
    out["ratio_to_one"] = data["ratio_to_one"]
    out["skipped"] = data["skipped"]
    out["budget"] = {"steps": data["steps"], "width": data["width"], "trials": data["trials"],
                     "tracking": data["tracking"]}
else:
    out["population_error"] = {"rc": int(bench_rc), "tail": tail("population.txt")}
graphs = (work / "graphs.json").read_text().strip() if (work / "graphs.json").exists() else ""
out["cuda_graphs"] = json.loads(graphs.splitlines()[-1]) if graphs else {
    "rc": int(graph_rc), "tail": tail("graphs.txt")
}
smi = work / "smi.csv"
if smi.exists() and smi.stat().st_size:
    util = [float(line.split(",")[0]) for line in smi.read_text().splitlines() if line.strip()]
    mem = [float(line.split(",")[1]) for line in smi.read_text().splitlines() if line.strip()]
    out["gpu_utilisation_pct"] = {"mean": round(sum(util) / len(util), 1), "max": max(util),
                                  "samples": len(util)}
    out["gpu_memory_mib_max"] = max(mem)
else:
    out["gpu_utilisation_pct"] = "no nvidia-smi samples (device %s)" % device
line = json.dumps(out)
Path(results, "gpu.json").write_text(line + "\n")
print(line)
PYEOF
