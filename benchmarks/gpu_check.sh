#!/usr/bin/env bash
# tinyseq's GPU checks in one run: install, the gpu-marked tests, the GPU benchmark.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Needs, already installed (no network is used): Python 3.10+, numpy, pluggy, pytest,
# CuPy for the machine's CUDA (e.g. cupy-cuda13x 14), and PyTorch with cuDNN for the
# reference. Writes every log under $OUT (default ./gpu_check_out) and a summary.txt;
# each stage has its own time limit so the whole run stays under about 8 minutes.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
unset CUPY_TF32  # full float32 on both sides

stage() {  # stage NAME LIMIT_S COMMAND...: run with a time limit, log, record the status
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$SUMMARY"
    return 0
}

stage env 60 bash -c "nvidia-smi || true; $PY -c 'import sys, numpy, cupy; print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__, \"devices\", cupy.cuda.runtime.getDeviceCount())'; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), \"cudnn\", torch.backends.cudnn.version())' || true"
stage install 120 "$PY" -m pip install --no-deps --no-build-isolation -e .
stage cuda_available 60 "$PY" -c "import tinyseq.backend as b, sys; ok = b.cuda_is_available(); print('cuda available:', ok); sys.exit(0 if ok else 1)"
# the gpu tests first compile CuPy's kernels (cached for the benchmark afterwards)
stage pytest_gpu 270 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rfE --durations=15 \
    --junitxml="$OUT/pytest_gpu.xml"
stage bench_gpu 200 "$PY" benchmarks/rnn_gpu.py --json "$OUT/rnn_gpu.json"
tail -n 3 "$OUT/pytest_gpu.log" | tee -a "$SUMMARY"
echo "logs in $OUT"
