#!/bin/bash
# One short script for a machine with AVX-512 and many cores (the project's "device" machine):
# build the extension in place, run the kernel and engine tests for every instruction set the
# CPU has, then the speed and thread-scaling benchmarks. Usage: bash benchmarks/device_check.sh [quick]
set -u
OUT=${OUT:-/tmp/signcut-device}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
py=${PYTHON:-python3}
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | sed 's/Flags:.*\(avx512[a-z_0-9]* \)/&/' | cut -c1-400
$py setup.py -q build_ext --inplace 2>&1 | grep -vE "^(copying|running)" | tail -5
$py -c "import signcut, json; print(json.dumps(signcut.cpu_info()))"
$py -m pytest -q --maxfail=30 -p no:cacheprovider tests/test_kernels.py tests/test_decompose.py tests/test_tensor.py \
    tests/test_array.py tests/test_format.py tests/test_matmul.py tests/test_effort.py \
    tests/test_outliers.py tests/test_continue.py 2>&1 | grep -vE "^[.sx]+ *(\[ *[0-9]+%\])?$" | tail -40
for isa in avx2 scalar; do
  SIGNCUT_CPU=$isa $py -m pytest -q -x -p no:cacheprovider tests/test_decompose.py tests/test_tensor.py 2>&1 | tail -2
done
[ "${1:-}" = quick ] && exit 0
cd benchmarks
# one thread against NumPy on one thread (NumPy's 16 threads make a 1024^2 matvec 10x faster,
# which no sequence of ~50 dependent half-steps per cut can follow)
OPENBLAS_NUM_THREADS=1 $py bench_speed.py --sizes 1024 --threads 1 --repeat 3 2>&1 | tee "$OUT/speed.txt"
OPENBLAS_NUM_THREADS=1 $py bench_speed.py --sizes 4096 --threads 1 --repeat 1 --width 1000 2>&1 | tee -a "$OUT/speed.txt"
$py bench_threads.py --width 800 --repeat 1 --threads 2 4 8 16 2>&1 | tee "$OUT/threads.txt"
$py bench_tensor.py --no-tensorly --repeat 1 2>&1 | tee "$OUT/tensor.txt"
$py bench_effort.py --repeat 1 2>&1 | tee "$OUT/effort.txt"
$py bench_matmul.py --threads 1 16 --json "$OUT/matmul.json" 2>&1 | tee "$OUT/matmul.txt"
