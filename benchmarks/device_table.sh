#!/bin/bash
# The benchmark table on the device machine (16 cores, AVX-512): build in place, then
# benchmarks/run.py at the issues' sizes for the CPU-bound scripts. Usage: bash benchmarks/device_table.sh
set -u
OUT=${OUT:-/tmp/signcut-device}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
py=${PYTHON:-python3}
$py setup.py -q build_ext --inplace 2>&1 | grep -vE "^(copying|running|Compiling|\[1/1\])" | tail -5
$py benchmarks/run.py --only quality speed threads memory tensor effort isa matmul outliers \
    --timeout 150 --json "$OUT/table.json" 2>&1 | tee "$OUT/table.md"
