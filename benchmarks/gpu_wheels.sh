#!/usr/bin/env bash
# Run HERE (where pip reaches the package index), before a session with a GPU: downloads into
# .whl/ (kept out of git) the wheels of what the GPU image lacks — its python3 (3.12) has
# torch, numpy, scipy, scikit-learn, matplotlib, pluggy, click, PyYAML, tqdm, torchmetrics,
# but not Optuna or pydantic — in the versions this checkout's .venv runs. Then, with the
# device tool: carry [".whl"] and run `benchmarks/gpu.sh`; it installs them and this
# project into /tmp (see /work/.library/device/README.md). MLflow (its UI alone is tens of
# MiB, over the 64 MiB a call may carry) is left out: gpu.sh then tunes untracked
# (`"tracking": false` in its JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
PY="${PYTHON:-.venv/bin/python}"
SPECS=$("$PY" - <<'PYEOF'
import importlib.metadata as m
names = ["optuna", "alembic", "sqlalchemy", "mako", "colorlog", "pydantic",
         "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
print(" ".join(f"{n}=={m.version(n)}" for n in names))
PYEOF
)
rm -rf .whl
PLATFORMS=()
for n in 28 27 17; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" --platform manylinux2014_x86_64 -d .whl $SPECS
du -sh .whl
ls .whl
