#!/usr/bin/env bash
# One short GPU run (under 10 minutes) that measures what the CPU suite measures and prints
# one JSON record naming the card (benchmarks/gpu/gpu_suite.py; docs/benchmarks.md, "The
# GPU suite").
#
# Prepared here (about 38 MiB in all, under the 64 MiB a device call carries):
#   python benchmarks/gpu/build_carry.py --wheels      # runs/gpu_carry/{data,whl}
# On the device (carry = ["runs/gpu_carry"]), with a 600 s command limit:
#   bash benchmarks/gpu/run_gpu_suite.sh [BUDGET_SECONDS]     # default 500
# Here, at toy sizes on the CPU (about 3 minutes on 2 loaded cores):
#   SMOKE=1 PYTHON=/work/main/.venv/bin/python bash benchmarks/gpu/run_gpu_suite.sh
# $OUT receives gpu_suite.json (the record), gpu_suite.log and raw.tar.gz.
set -uo pipefail
BUDGET=${1:-500}
OUT=${OUT:-runs/gpu_suite}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
missing=$("$PY" - <<'PY'
import importlib.util as u
names = ("segmentation_models_pytorch", "lightly", "pytorch_grad_cam", "ttach")
missing = [m for m in names if u.find_spec(m) is None]
try:
    import timm
    if int(timm.__version__.split(".")[0]) < 1:
        missing.append("timm")
except ImportError:
    missing.append("timm")
print(" ".join(missing))
PY
)
if [ -n "$missing" ]; then
  echo "installing the carried wheels (missing here: $missing)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site runs/gpu_carry/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export CXR_DATA_ROOT=${CXR_DATA_ROOT:-$PWD/runs/gpu_carry/data}
export PYTHONUNBUFFERED=1
if [ -n "${SMOKE:-}" ]; then
  exec "$PY" benchmarks/gpu/gpu_suite.py --smoke --device cpu --out "$OUT" --budget 1800
fi
exec "$PY" benchmarks/gpu/gpu_suite.py --device cuda --out "$OUT" --budget "$BUDGET"
