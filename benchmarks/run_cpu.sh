#!/usr/bin/env bash
# Every CPU result on the documentation's benchmarks page, then its figures and the tables of
# benchmarks/README.md. About an hour on a 2-core machine; run it on an otherwise idle one.
# The JSON and the PNGs go to benchmarks/results/ (the site draws its own figures from the
# same JSON while it builds).
#
#   bash benchmarks/run_cpu.sh            # PYTHON=... to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results

# cost per neuron-step over T and N, 1 and 2 threads: cpu_sweep_1thread.json, cpu_sweep_2threads.json
# (--no-steps: the clif_step loop section, which the page does not show, takes as long again)
"$PY" benchmarks/bench_sweep.py --no-steps --json-dir "$OUT"
# one layer: fused CLIF against the reference, snn.Leaky and SpikingJelly's CLIF, 1 thread
"$PY" benchmarks/bench_neuron.py --threads 1 --T 4 16 64 256 --sizes 32x4096 --reps 9 \
    --json "$OUT/neuron_cpu_1thread.json"
# Open Neuromorphic's library benchmark with their models and protocol, 1 thread
"$PY" benchmarks/bench_libraries.py --threads 1 --json "$OUT/open_neuromorphic_cpu.json"
# the figures and the README's tables, from the JSON above
"$PY" benchmarks/plot_results.py --out-dir "$OUT" --update-readme
