#!/usr/bin/env bash
# The GPU checks in one command, on a machine with a CUDA GPU, a Python that has torch, this clone and its wheels
# (README, Development): the wheels that Python lacks go into GPU_SITE (/tmp/site), `make test-gpu` runs the tests
# marked gpu (a tiny job per task, SIGTERM and resume, scripts/bench.py --device cuda once), and $OUT (else
# /tmp/gpu-check) receives machine.txt, test-gpu.log (each test's duration too), junit.xml, bench.json, bench.txt.
#
#   scripts/gpu_check.sh [WHEELS_DIR]     (default: wheels; PYTHON defaults to python3)
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${OUT:-/tmp/gpu-check}" && cd "${OUT:-/tmp/gpu-check}" && pwd)
wheels=${1:-wheels}
python=${PYTHON:-python3}
site=${GPU_SITE:-/tmp/site}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$python" -c 'import sys, torch, transformers as t; print("python", sys.version.split()[0], "torch", torch.__version__,
                "CUDA", torch.version.cuda, "transformers", t.__version__, "GPU", torch.cuda.is_available())'
} >"$out/machine.txt" 2>&1
export GPU_CHECK_OUT="$out" PYTHONUNBUFFERED=1
pytest_args="-v --durations=0 --junitxml=$out/junit.xml"
if command -v make >/dev/null; then
  make test-gpu PYTHON="$python" WHEELS="$wheels" GPU_SITE="$site" PYTEST_ARGS="$pytest_args"
else  # what make test-gpu does; every carried wheel is one the machine lacks
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" "$wheels"/* &&
    PYTHONPATH="$PWD:$site" "$python" -m pytest -m gpu $pytest_args tests/gpu
fi 2>&1 | tee "$out/test-gpu.log"
exit "${PIPESTATUS[0]}"
