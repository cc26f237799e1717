#!/usr/bin/env bash
# Reproduce a committed benchmark result in benchmarks/results/<name>/ with one command:
#
#   bash benchmarks/reproduce.sh fcn8s-256      # full-width FCN8s, random weights, 256×256
#   bash benchmarks/reproduce.sh fcn8s-512      # full-width FCN8s, random weights, 512×512
#   bash benchmarks/reproduce.sh vgg16_bn-224   # full-width VGG16-BN classifier, random weights, 224×224
#   bash benchmarks/reproduce.sh demo-fcn8s     # the demo-trained FCN8s, parity on the demo val images
#
# The results go to benchmarks/results/<name>-<device>/ (DEVICE=cpu by default; DEVICE=cuda on a GPU
# machine adds the GPU rows: FP16 autocast, CUDA graphs, torch.compile, onnxruntime's CUDA provider).
# On the CPU the name also carries the CPU's class when it is not AVX512-VNNI (the class of the first
# records): <name>-cpu-amx/, <name>-cpu-avxvnni/, <name>-cpu-avx2/, so a record of one class never
# overwrites another's (backend preferences hold per class: runtime/backends/cpu_records.py).
# Run from the repository root after `make install` (or `make demo` for demo-fcn8s). Untrained
# checkpoints are written once to $DLCV_BENCH_CHECKPOINTS (default /tmp/dlcv-bench-checkpoints);
# they are seeded, so every machine gets the same weights. DEMO_CKPT overrides the demo checkpoint;
# PRECISIONS overrides the precisions (default fp32,fp16,int8,bf16); EXTRA adds dlcv-bench options (e.g. EXTRA="--threads 4").
set -euo pipefail

VENV_BIN="${VENV_BIN:-.venv/bin}"
CKPTS="${DLCV_BENCH_CHECKPOINTS:-/tmp/dlcv-bench-checkpoints}"
DEMO_CKPT="${DEMO_CKPT:-runs/demo-fcn8s/best.pt}"
EXTRA="${EXTRA:-}"
DEVICE="${DEVICE:-cpu}"
# bf16 runs the FP32 file in BF16 on a CPU with avx512_bf16/amx_bf16; elsewhere its rows say why not
PRECISIONS="${PRECISIONS:-fp32,fp16,int8,bf16}"

random_checkpoint() {  # arch -> path of its seeded random checkpoint (written on first use)
    local path="$CKPTS/$1-random.pt"
    if [[ ! -f "$path" ]]; then
        "$VENV_BIN/python" -m dlcv.bench.random_checkpoint "$1" --out "$path" >&2
    fi
    echo "$path"
}

cpu_class_tag() {  # "" on AVX512-VNNI, -amx, -avxvnni or -avx2 (the order of dlcv.runtime.cpu_isa.INT8_DOT_PRODUCTS)
    local flags
    flags="$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || true)"
    if [[ " $flags " == *" amx_int8 "* ]]; then echo "-amx"
    elif [[ " $flags " == *" avx512_vnni "* ]]; then echo ""
    elif [[ " $flags " == *" avx_vnni "* ]]; then echo "-avxvnni"
    else echo "-avx2"
    fi
}

bench() {  # case checkpoint [dlcv-bench options...]
    local case="$1" checkpoint="$2"
    shift 2
    local reproduce="Reproduce: \`bash benchmarks/reproduce.sh $case\`" name="$case-${DEVICE//:/}"
    [[ "$DEVICE" == cpu ]] || reproduce="Reproduce: \`DEVICE=$DEVICE bash benchmarks/reproduce.sh $case\`"
    [[ "$DEVICE" != cpu ]] || name="$name$(cpu_class_tag)"
    # shellcheck disable=SC2086  # EXTRA holds several options
    "$VENV_BIN/dlcv-bench" "$checkpoint" --device "$DEVICE" --name "$name" --note "$reproduce." "$@" $EXTRA
}

case "${1:-}" in
    fcn8s-256)
        bench fcn8s-256 "$(random_checkpoint fcn8s)" --shape 256x256 --batch-sizes 1,2 --precisions "$PRECISIONS" \
            --warmup 1 --iters 8 --rounds 4 --images 8 --e2e-images 8
        ;;
    fcn8s-512)
        bench fcn8s-512 "$(random_checkpoint fcn8s)" --shape 512x512 --batch-sizes 1,2 --precisions "$PRECISIONS" \
            --warmup 1 --iters 3 --rounds 3 --images 4 --e2e-images 2
        ;;
    vgg16_bn-224)
        bench vgg16_bn-224 "$(random_checkpoint vgg16_bn)" --shape 224x224 --batch-sizes 1,4 --precisions "$PRECISIONS" \
            --warmup 2 --iters 8 --rounds 4 --images 16 --e2e-images 8
        ;;
    demo-fcn8s)
        bench demo-fcn8s "$DEMO_CKPT" --data demo --batch-sizes 1,8 --precisions "$PRECISIONS" \
            --warmup 3 --iters 20 --rounds 5 --images 150 --e2e-images 32
        ;;
    *)
        echo "usage: [DEVICE=cpu|cuda] bash benchmarks/reproduce.sh fcn8s-256|fcn8s-512|vgg16_bn-224|demo-fcn8s" >&2
        exit 2
        ;;
esac
