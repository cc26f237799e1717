#!/usr/bin/env bash
# What varies between machines: the demo trained under the CPU settings that change float
# rounding (instruction set, thread count), one run after the other, and its figures side by
# side. Usage: bash benchmarks/demo_variation.sh [OUT_DIR]   (about 4 × the time of make demo)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-variation}
mkdir -p "$out"
make --no-print-directory install >/dev/null
grep -o -w -e avx2 -e avx512f -e avx512_vnni -e avx_vnni -e amx_int8 /proc/cpuinfo | sort -u | tr '\n' ' ' > "$out/isa.txt" || true

run() {  # NAME ENV...
    local name=$1; shift
    env "$@" .venv/bin/python benchmarks/studies/demo.py --run "$out/$name/run" --artifacts "$out/$name/artifacts" \
        --out "$out/$name/infer" > "$out/$name.log" 2>&1
}
run default X=1
run default-again X=1
run avx2-capped ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
run one-thread OMP_NUM_THREADS=1

.venv/bin/python - "$out" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"CPU flags: {(out / 'isa.txt').read_text().strip()}")
print(f"{'run':<16}{'val mIoU per epoch':<44}{'test mIoU torch / onnxruntime'}")
for name in ("default", "default-again", "avx2-capped", "one-thread"):
    rows = list(csv.DictReader((out / name / "run" / "log.csv").open()))
    val = " ".join(f"{float(r['val_metric']):.3f}" for r in rows)
    test = [json.loads((out / name / "infer" / b / "metrics.json").read_text())["metrics"]["miou"] for b in ("torch", "onnxruntime")]
    print(f"{name:<16}{val:<44}{test[0]:.4f} / {test[1]:.4f}")
PY
