#!/usr/bin/env bash
# One GPU session, under 10 minutes (issue 23, part 5): the op check with its roofline, then the bench on the GPU.
#
#   OUT=/some/folder bash scripts/gpu_session.sh     # on the GPU machine, from the repository root
#
# Needs the project installed with the cuda extra (pip install -e '.[test,cuda]') and, for the peer
# columns, torch with CUDA. Writes under $OUT (default results/gpu_session):
#   gpu_check/<UTC time>-<id>/gpu_check.csv   every CUDA op against the CPU op, CUDA-event timings,
#                                             torch CUDA beside, roof_ms / roof_frac (scripts/roofline.py)
#   bench/<UTC time>-<id>/bench.csv           nbnets bench --device cuda: kernels and training steps vs torch CUDA
#   gpu_check.log, bench.log, device.txt      the printed output and the device
# Each step has its own time limit (timeout), so the whole stays under 10 minutes; a step that fails
# does not stop the next one; the exit code is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_session}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
  "$PY" -c "import numba, numba_cuda; from numba import cuda; print('numba', numba.__version__, 'numba-cuda', getattr(numba_cuda, '__version__', '?')); cuda.detect()" || true
} > "$OUT/device.txt" 2>&1

status=0
# 1. every CUDA op against the CPU kernels, timed with CUDA events, roofline beside (about 4 minutes on an H100/H200)
timeout 330 "$PY" scripts/gpu_check.py --out "$OUT" --cpu-runs 1 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}; [ "$status" -eq 0 ] && status=$rc
# 2. the bench on the GPU against torch CUDA (kernels and whole training steps, char-rnn included)
timeout 240 nbnets bench --device cuda --suite all --max-seconds 2 --out "$OUT" 2>&1 | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}; [ "$status" -eq 0 ] && status=$rc
echo "gpu_session: exit $status; CSVs under $OUT"
exit "$status"
