#!/usr/bin/env bash
# resnet-50 and bert-base served by each framework and each exported runtime that can export
# them (benchmarks/RESULTS.md): bash benchmarks/runtimes.sh [runs folder, default runs/runtimes]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/runtimes}
P=(-p batch_size=8 -p threads=2 -p steps=10 -p warmup=3 -p repeats=2)
run() { .venv/bin/repro run "$1" -f "$2" "${P[@]}" -p runtime="$3" --runs-dir "$OUT/$1" 2>&1 | tail -1; }
for w in resnet-50 bert-base; do
  run "$w" torch native; run "$w" torch onnxruntime; run "$w" torch openvino
  run "$w" tensorflow native; run "$w" tensorflow litert
  [ "$w" = resnet-50 ] && run "$w" tensorflow onnxruntime
  run "$w" jax native
  [ "$w" = bert-base ] && run "$w" jax onnxruntime
  [ "$w" = resnet-50 ] && run "$w" mxnet native
done
