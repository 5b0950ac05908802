#!/usr/bin/env bash
# Every CPU result on the documentation's benchmark page, then its figures. About an hour on
# a 2-core machine; run it on an otherwise idle machine. The JSON goes to benchmarks/results/,
# the figures to benchmarks/results/*.png (the site draws its own from the same JSON).
#
#   bash benchmarks/run_cpu.sh            # PYTHON=... to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results

# cost per neuron-step over T and N, 1 and 2 threads: cpu_sweep_1thread.json, cpu_sweep_2threads.json
"$PY" benchmarks/bench_sweep.py --json-dir "$OUT"
# one layer: fused CLIF against the reference, snn.Leaky and SpikingJelly's CLIF, 1 thread
"$PY" benchmarks/bench_neuron.py --threads 1 --T 4 16 64 256 --sizes 32x4096 --reps 9 \
    --json "$OUT/neuron_cpu_1thread.json"
# Open Neuromorphic's library benchmark with their models and protocol, 1 thread
"$PY" benchmarks/bench_libraries.py --threads 1 --json "$OUT/open_neuromorphic_cpu.json"
# the figures, from the JSON above
"$PY" benchmarks/plot_results.py --out-dir "$OUT"
