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

stage env 20 bash -c "nvidia-smi || true; $PY -c 'import sys, numpy, cupy; print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__, \"devices\", cupy.cuda.runtime.getDeviceCount())'; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), \"cudnn\", torch.backends.cudnn.version())' || true"
stage install 60 "$PY" -m pip install --no-deps --no-build-isolation -e .
stage cuda_available 20 "$PY" -c "import tinyseq.backend as b, sys; ok = b.cuda_is_available(); print('cuda available:', ok); sys.exit(0 if ok else 1)"
# the GPU module first (fused kernels, graph mode, parity), then every other gpu-marked
# test (the cuda cases of the device fixture); the first run compiles CuPy's kernels,
# which are cached on disk for the rest and for the benchmark
stage pytest_gpu_module 150 "$PY" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider \
    -rfE --durations=10 --junitxml="$OUT/pytest_gpu_module.xml"
stage pytest_gpu_rest 100 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rfE --durations=10 \
    --ignore=tests/test_gpu.py --junitxml="$OUT/pytest_gpu_rest.xml"
stage bench_gpu 130 "$PY" benchmarks/rnn_gpu.py --json "$OUT/rnn_gpu.json"
for log in pytest_gpu_module pytest_gpu_rest; do
    echo "$log: $(tail -n 1 "$OUT/$log.log")" | tee -a "$SUMMARY"
done
echo "logs in $OUT"
