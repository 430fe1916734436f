#!/usr/bin/env bash
# Checks to run on a CUDA machine (the tests that need a GPU, then the issue-5 benchmarks).
# Uses that machine's own python3/torch/transformers; packages it lacks come from .whl/ if there.
#   OUT=/some/dir bash scripts/gpu_check.sh        (logs and JSON land in $OUT)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/realtime-gpu-check}
mkdir -p "$OUT"
PY=${PY:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
STEPS=" ${STEPS:-tests bench streams} "      # which of the three to run
step() { echo; echo "=== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, cv2; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cv2', cv2.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

if [[ "$STEPS" == *" tests "* ]]; then
step "CUDA tests"
timeout "${TEST_TIMEOUT:-240}" $PY -m pytest -q -rs -p no:cacheprovider -o timeout=120 \
  tests/integration/test_fast.py tests/unit/test_gpu_preprocess.py tests/integration/test_pipeline_device.py tests/integration/test_bench.py tests/unit/test_capture_gate.py tests/unit/test_window_paths.py \
  >"$OUT/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "passed|failed|error" "$OUT/pytest.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20
fi

if [[ "$STEPS" == *" bench "* ]]; then
step "bench: reference vs ours, VideoMAE-base random weights, 720p frames"
timeout "${BENCH_TIMEOUT:-200}" $PY -m realtime bench --device cuda --json "$OUT/bench.json" \
  >"$OUT/bench.log" 2>&1
echo "bench rc=$?"; tail -25 "$OUT/bench.log"
fi

if [[ "$STEPS" == *" streams "* ]]; then
# Variants, ';'-separated: extra `realtime bench --streams` arguments for each run.
IFS=';' read -ra variants <<< "${STREAM_VARIANTS:- ;--max-batch 16;--every-frame}"
for i in "${!variants[@]}"; do
  step "bench: ${STREAMS:-64} synthetic 720p cameras through the pipeline (${variants[$i]:-defaults})"
  # shellcheck disable=SC2086  # the variant is a list of arguments
  timeout "${STREAMS_TIMEOUT:-120}" $PY -m realtime bench --device cuda --streams "${STREAMS:-64}" \
    --seconds "${STREAM_SECONDS:-20}" ${variants[$i]} --json "$OUT/streams$i.json" >"$OUT/streams$i.log" 2>&1
  echo "streams rc=$?"; grep -A6 "^${STREAMS:-64} streams" "$OUT/streams$i.log"
done
fi
