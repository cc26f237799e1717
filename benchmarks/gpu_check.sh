#!/usr/bin/env bash
# The GPU check: what dlcv can prove on a bare GPU machine, in one run of under 5 minutes (so that a
# re-run fits in 15 minutes of device time with a 1-2 minute start), with everything it measured
# written under one folder.
#
# On the lent GPU machine (CUDA PyTorch, cuda-python, no internet, no TensorRT, no onnxruntime-gpu),
# from the repository root:
#
#   GPU_CHECK_OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
#   tar -C /tmp -czf "$OUT/gpu-check.tgz" gpu-check && cp /tmp/gpu-check/summary.md "$OUT/"
#
# (the device tool brings back at most 8 files, so the folder travels back as one archive).
# Dry run on a CPU machine, as the test suite does: the same steps with tiny models on the CPU;
# what needs a GPU is recorded as skipped with the reason:
#
#   GPU_CHECK_DRY=1 GPU_CHECK_OUT=/tmp/gpu-check-dry bash benchmarks/gpu_check.sh
#
# Settings (environment):
#   GPU_CHECK_OUT       output folder (default gpu-check-out); emptied first
#   GPU_CHECK_DRY       1 = dry run (default 0)
#   GPU_CHECK_WORK      scratch for checkpoints and exported models (default ${TMPDIR:-/tmp}/gpu-check-work)
#   GPU_CHECK_WHEELS    folder of wheels installed first, offline (default .whl)
#   GPU_CHECK_BUDGET_S  seconds for all steps (default 300, 900 for a dry run); a step that would not fit is skipped
#   GPU_CHECK_STEPS     comma list of steps to run (default all), in the order they run: install,facts,
#                       cuda-memory,bench-fcn8s,compile-fcn8s,pytest-gpu,bench-vgg16_bn,gpu-rows,
#                       onnxruntime-rows (where onnxruntime-gpu is; on the CPU in a dry run),
#                       tensorrt-rows (where a TensorRT builder is)
#   PYTHON              the interpreter that has PyTorch (default python3)
#
# Installing: the project goes in with `pip install --no-deps --no-build-isolation --no-index -e .`
# over the machine's own torch. Everything else it imports was on the machine's list of installed
# packages (KINDS.md: opencv-python-headless, onnxruntime, click, tqdm, onnx, onnxscript, scikit-learn,
# matplotlib, pytest, hypothesis, cuda-bindings), so no wheel has to travel. If the install step
# reports a missing module, fill the wheel folder here, where pip reaches the registry, and carry it
# (it is git-ignored; the wheels and the working tree must stay under 64 MiB together):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl NAME==VERSION        # e.g. click==8.5.1; one version of each, name each missing dependency too
#
# Output (GPU_CHECK_OUT):
#   steps.tsv        step or row, status (ok|failed|skipped), seconds, detail: every step, every
#                    benchmark row, every row that cannot run here, each skip and failure with its reason
#   summary.md       the same as a table, under the machine's facts
#   env.txt          versions, GPUs, onnxruntime providers, TensorRT availability
#   nvidia-smi.txt   nvidia-smi's query and its full report
#   install.log      the offline install
#   pytest-gpu.log, pytest-gpu.xml   the gpu-marked tests (-rA lists every skip reason)
#   cuda_memory.json dlcv.runtime.tensorrt.cuda_memory on a real stream (dlcv.bench.cuda_check), and under
#                    stream_check dlcv's TensorRT backend on a real stream with a simulated engine whose
#                    execute_async_v3 launches PyTorch kernels on it (dlcv.bench.stream_check)
#   bench/<name>/    dlcv-bench reports of the PyTorch GPU baselines: FCN8s 512x512 eager FP32, channels_last,
#                    FP16 autocast and CUDA graphs with their label agreement against eager FP32, and
#                    torch.compile at batch 1 and 8; VGG16-BN 224x224 last (report.md, results.json, PNGs)
#   logs/<step>.log  each step's output
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DRY="${GPU_CHECK_DRY:-0}"
OUT="${GPU_CHECK_OUT:-gpu-check-out}"
WORK="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/gpu-check-work}"
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
# 300 s on a GPU; a dry run's tiny models on a shared CPU get more room (its steps are slower there)
BUDGET="${GPU_CHECK_BUDGET_S:-$([[ "$DRY" == 1 ]] && echo 900 || echo 300)}"
STEPS="${GPU_CHECK_STEPS:-all}"
RESERVE=20  # seconds kept for the summary
export PYTHONUNBUFFERED=1 PYTHON DRY WORK WHEELS

rm -rf "$OUT"
mkdir -p "$OUT/logs" "$OUT/bench" "$WORK"
OUT="$(cd "$OUT" && pwd)"
export OUT
: > "$OUT/steps.tsv"
START=$SECONDS

# dlcv-bench's timing options (words; the steps run in child shells, which get no arrays)
if [[ "$DRY" == 1 ]]; then
    DEVICE=cpu WIDTH=0.0625 FCN_SHAPE=64x64 VGG_SHAPE=32x32
    TIMING="--batch-sizes 1,2 --warmup 1 --iters 2 --rounds 1 --images 4 --e2e-images 2 --bootstrap 20 --ceiling-size 64"
else
    DEVICE=cuda WIDTH=1.0 FCN_SHAPE=512x512 VGG_SHAPE=224x224
    TIMING="--batch-sizes 1,8 --warmup 3 --iters 20 --rounds 4 --images 16 --e2e-images 8 --bootstrap 200"
fi
export DEVICE WIDTH FCN_SHAPE VGG_SHAPE TIMING

record() {  # step status seconds detail
    local detail="${4//$'\n'/ }"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${detail//$'\t'/ }" >> "$OUT/steps.tsv"
}

wanted() {
    [[ "$STEPS" == all || ",$STEPS," == *",$1,"* ]]
}

# run_step NAME CAP_SECONDS COMMAND...: runs COMMAND (a program or one of the functions below,
# exported to the child shell) with a timeout of CAP (or what the budget has left), output in
# logs/NAME.log; records ok, failed (exit code and the log's last line) or skipped.
run_step() {
    local name="$1" cap="$2"
    shift 2
    if ! wanted "$name"; then
        record "$name" skipped 0 "not in GPU_CHECK_STEPS=$STEPS"
        return 1
    fi
    local left=$((BUDGET - (SECONDS - START) - RESERVE))
    if ((left < 10)); then
        record "$name" skipped 0 "budget: ${left}s of GPU_CHECK_BUDGET_S=${BUDGET}s left"
        return 1
    fi
    local limit=$((cap < left ? cap : left)) t0=$SECONDS rc
    echo "== $name (up to ${limit}s)" >&2
    timeout --kill-after=10 "$limit" bash -c '"$@"' run_step "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    if ((rc == 0)); then
        record "$name" ok $((SECONDS - t0)) ""
        return 0
    fi
    local why
    why="$(grep -v '^\s*$' "$OUT/logs/$name.log" | tail -n 1 | cut -c1-300)"
    ((rc == 124 || rc == 137)) && why="timed out after ${limit}s; $why"
    record "$name" failed $((SECONDS - t0)) "exit $rc: $why"
    return 1
}

# -- facts --------------------------------------------------------------------------------------
facts() {
    if command -v nvidia-smi > /dev/null; then
        {
            nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm --format=csv
            echo
            nvidia-smi -q
        } > "$OUT/nvidia-smi.txt" 2>&1
    else
        echo "nvidia-smi: not found on this machine" > "$OUT/nvidia-smi.txt"
    fi
    "$PYTHON" -m dlcv.bench.gpu_check facts > "$OUT/env.txt" || "$PYTHON" -c 'import sys; print("python:", sys.version)' > "$OUT/env.txt"
    cat "$OUT/nvidia-smi.txt" "$OUT/env.txt"
}

# -- install ------------------------------------------------------------------------------------
install() {
    shopt -s nullglob
    local wheels=("$WHEELS"/*.whl)
    shopt -u nullglob
    if ((${#wheels[@]})); then
        echo "installing ${#wheels[@]} wheel(s) from $WHEELS"
        "$PYTHON" -m pip install --no-index --no-deps --no-build-isolation "${wheels[@]}" || return 1
    fi
    if [[ "$DRY" == 1 ]]; then
        # The same offline build from a copy of the sources into a scratch folder: the environment
        # already has dlcv, and a build in the checkout would leave a dlcv.egg-info there whose
        # stale entry points shadow the installed ones.
        echo "dry run: building the project offline into $WORK/site, not into the environment"
        rm -rf "$WORK/src" "$WORK/site"
        mkdir -p "$WORK/src"
        cp -r setup.cfg pyproject.toml README.md runtime train export analyze benchmarks "$WORK/src/" || return 1
        "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index --target "$WORK/site" "$WORK/src" || return 1
        ls "$WORK/site" | grep -i '^dlcv' || return 1
    else
        "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index -e . \
            || "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index .
    fi
    "$PYTHON" - << 'EOF'
import importlib, sys
from importlib.metadata import entry_points

needed = ["numpy", "cv2", "onnxruntime", "click", "tqdm", "torch", "torchvision", "onnx", "onnxscript", "sklearn",
          "matplotlib", "pytest", "hypothesis", "cuda.bindings", "dlcv.runtime", "dlcv.train", "dlcv.export", "dlcv.bench"]
missing = []
for name in needed:
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
backends = sorted(ep.name for ep in entry_points(group="dlcv.backends"))
print("dlcv backends:", ", ".join(backends) or "none")
if missing or not backends:
    print("missing: " + "; ".join(missing) + ("" if backends else "; no dlcv.backends entry points"), file=sys.stderr)
    sys.exit(1)
EOF
}

# -- PyTorch GPU baselines ----------------------------------------------------------------------
checkpoint() {  # arch -> path (written once)
    local path="$WORK/$1-random-w$WIDTH.pt"
    [[ -f "$path" ]] || "$PYTHON" -m dlcv.bench.random_checkpoint "$1" --width "$WIDTH" --out "$path" >&2 || return 1
    echo "$path"
}

bench() {  # arch shape torch-variants name backends [artifacts and more dlcv-bench options]
    local arch="$1" shape="$2" variants="$3" name="$4" backends="$5" ckpt
    shift 5
    ckpt="$(checkpoint "$arch")" || return 1
    # shellcheck disable=SC2086  # TIMING holds several options
    "$PYTHON" -m dlcv.bench.cli "$ckpt" "$@" --device "$DEVICE" --backends "$backends" --torch-variants "$variants" \
        --shape "$shape" $TIMING --out "$OUT/bench" --name "$name" \
        --note "benchmarks/gpu_check.sh; random weights: latency is the full model's, parity is against PyTorch's own labels."
}

bench_rows() {  # name: one steps.tsv line per row of bench/NAME/results.json
    local results="$OUT/bench/$1/results.json"
    [[ -f "$results" ]] && "$PYTHON" -m dlcv.bench.gpu_check rows "$results" >> "$OUT/steps.tsv"
}

# -- rows beyond PyTorch: onnxruntime-gpu and TensorRT ---------------------------------------------
gpu_rows() {  # records every such row this machine cannot run, with the reason
    local kind reason
    "$PYTHON" -m dlcv.bench.gpu_check availability > "$WORK/availability.tsv" || return 1
    [[ -s "$WORK/availability.tsv" ]] || return 1
    cat "$WORK/availability.tsv"
    while IFS=$'\t' read -r kind reason; do
        if [[ "$reason" != ok ]]; then
            for precision in fp32 fp16 int8; do
                record "$kind $precision" skipped 0 "$reason"
            done
        fi
    done < "$WORK/availability.tsv"
}

can_run() {  # kind: true when availability.tsv says ok
    grep -q "^$1"$'\t'"ok$" "$WORK/availability.tsv" 2> /dev/null
}

onnxruntime_rows() {
    bench fcn8s "$FCN_SHAPE" autocast "fcn8s-${FCN_SHAPE%%x*}-onnxruntime-$DEVICE" torch,onnxruntime --precisions fp32,fp16
}

tensorrt_rows() {
    local ckpt
    ckpt="$(checkpoint fcn8s)" || return 1
    "$PYTHON" -m dlcv.export.cli "$ckpt" --out "$WORK/trt" --trt --precision fp16 --input-size "$FCN_SHAPE" \
        --max-shape "8x3x$FCN_SHAPE" || return 1
    bench fcn8s "$FCN_SHAPE" autocast "fcn8s-${FCN_SHAPE%%x*}-tensorrt" torch,tensorrt "$WORK/trt/fcn8s.plan"
}

export -f record facts install checkpoint bench gpu_rows onnxruntime_rows tensorrt_rows

run_step install 120 install
cp "$OUT/logs/install.log" "$OUT/install.log" 2> /dev/null
run_step facts 30 facts
run_step cuda-memory 60 "$PYTHON" -m dlcv.bench.cuda_check --out "$OUT/cuda_memory.json"
if [[ -f "$OUT/cuda_memory.json" ]]; then  # the round trip's and the stream check's own rows
    "$PYTHON" -m dlcv.bench.gpu_check cuda-rows "$OUT/cuda_memory.json" >> "$OUT/steps.tsv"
fi
bench_step() {  # step cap arch shape variants name
    run_step "$1" "$2" bench "$3" "$4" "$5" "$6" torch
    bench_rows "$6"
}
bench_step bench-fcn8s 90 fcn8s "$FCN_SHAPE" channels_last,autocast,cuda_graphs "fcn8s-${FCN_SHAPE%%x*}-$DEVICE"
# torch.compile on one model (its compile time is the least predictable), at batch 1 and 8
bench_step compile-fcn8s 120 fcn8s "$FCN_SHAPE" compile "fcn8s-${FCN_SHAPE%%x*}-$DEVICE-compile"
run_step pytest-gpu 60 "$PYTHON" -m pytest -q -m gpu -rA -p no:cacheprovider --junitxml="$OUT/pytest-gpu.xml" tests
cp "$OUT/logs/pytest-gpu.log" "$OUT/pytest-gpu.log" 2> /dev/null
bench_step bench-vgg16_bn 60 vgg16_bn "$VGG_SHAPE" channels_last,autocast,cuda_graphs "vgg16_bn-${VGG_SHAPE%%x*}-$DEVICE"
run_step gpu-rows 60 gpu_rows
if can_run onnxruntime-cuda || [[ "$DRY" == 1 ]]; then  # a dry run checks the command on the CPU provider
    run_step onnxruntime-rows 150 onnxruntime_rows
    bench_rows "fcn8s-${FCN_SHAPE%%x*}-onnxruntime-$DEVICE"
fi
if can_run tensorrt-engine; then
    run_step tensorrt-rows 200 tensorrt_rows
    bench_rows "fcn8s-${FCN_SHAPE%%x*}-tensorrt"
fi

failed="$(cut -f2 "$OUT/steps.tsv" | grep -c '^failed$')"
record total "$( ((failed)) && echo failed || echo ok)" $((SECONDS - START)) \
    "$failed failed; $( [[ "$DRY" == 1 ]] && echo "dry run on the CPU" || echo "device $DEVICE")"
"$PYTHON" -m dlcv.bench.gpu_check summary "$OUT" > /dev/null || echo "summary failed" >&2
cat "$OUT/summary.md" 2> /dev/null
echo "GPU check: $((SECONDS - START)) s, results in $OUT" >&2
