#!/usr/bin/env bash
# Run a study file on a device machine and pack what it wrote into $OUT.
#
# Prepared here (see docs/benchmarks.md, "The study on a GPU"):
#   python benchmarks/gpu/build_carry.py          # runs/gpu_carry/data, about 35 MiB
#   pip download --no-deps --only-binary=:all: -d runs/gpu_carry/whl segmentation-models-pytorch==0.6.0
# On the device (carry = ["runs/gpu_carry"]):
#   bash benchmarks/gpu/run_gpu_study.sh [STUDY.toml] [SECONDS]
# The study stops after SECONDS (default 540) and resumes from its cells when rerun with
# the cells put back under its output folder.
set -uo pipefail
CONFIG=${1:-benchmarks/gpu/study_kermany_gpu.toml}
LIMIT=${2:-540}
OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ! "$PY" -c "import segmentation_models_pytorch" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site runs/gpu_carry/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export CXR_DATA_ROOT=${CXR_DATA_ROOT:-$PWD/runs/gpu_carry/data}
export PYTHONUNBUFFERED=1
"$PY" - <<'PY' > "$OUT/machine.txt" 2>&1
import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
PY
start=$(date +%s)
timeout "$LIMIT" "$PY" -m cxr_curriculum study "$CONFIG" > "$OUT/study.log" 2>&1
status=$?
echo "exit $status after $(( $(date +%s) - start )) s" >> "$OUT/study.log"
# a stopped run has cells but no final report: write it from the finished cells
[ "$status" -ne 0 ] && "$PY" -m cxr_curriculum study "$CONFIG" --report-only >> "$OUT/study.log" 2>&1
dir=$("$PY" -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['output'])" "$CONFIG")
tar -czf "$OUT/study.tar.gz" --exclude=pretrain --exclude=cache -C "$(dirname "$dir")" "$(basename "$dir")"
cp "$dir/report.md" "$dir/results.json" "$OUT/" 2>/dev/null
exit "$status"
