#!/usr/bin/env bash
# Re-measure every figure the README quotes, one after the other (never in parallel: the timings share
# the CPU). Logs and outputs go to runs/readme/; the README's tables are copied from them.
#   bash scripts/readme_figures.sh [STEP ...]
#   steps: fast_vs_slow bf16 demo eval data predict predict_bf16 predict_720p model (default: all)
#   on a CUDA machine also: model_cuda predict_cuda (not in the default list)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=runs/readme
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(fast_vs_slow bf16 demo eval data predict predict_bf16 predict_720p model)
for step in "${steps[@]}"; do
  echo "== $step: $(date -u +%H:%M:%S)"
  start=$(date +%s)
  case "$step" in
    fast_vs_slow) $PY scripts/fast_vs_slow.py --data "$OUT/toy" --out "$OUT/fast_vs_slow" \
                    && .venv/bin/sfdet plot "$OUT/fast_vs_slow/slowfast" --out "$OUT/fast_vs_slow/slowfast_curves.png" ;;
    bf16)    $PY scripts/bf16_map.py --weights "$OUT/fast_vs_slow/slowfast/checkpoints/best.pt" --data "$OUT/toy" --out "$OUT/bf16" ;;
    demo)    .venv/bin/sfdet demo --out "$OUT/demo" ;;
    eval)    $PY scripts/bench_eval.py --out "$OUT/bench_eval.json" ;;
    data)    $PY scripts/bench_data.py --quick ;;
    predict) $PY scripts/bench_predict.py --workdir "$OUT/bench_predict" ;;
    predict_bf16) $PY scripts/bench_predict.py --workdir "$OUT/bench_predict" --precision bf16 ;;
    predict_720p) $PY scripts/bench_predict.py --workdir "$OUT/bench_predict_720p" --size 1280x720 --lengths 60,120 ;;
    model)   $PY scripts/bench_model.py --quick --json "$OUT/bench_model.json" ;;
    model_cuda)   $PY scripts/bench_model.py --device cuda --json "$OUT/bench_model_cuda.json" ;;
    predict_cuda) $PY scripts/bench_predict.py --workdir "$OUT/bench_predict" --device cuda --precision bf16 \
                    --batch-size 16 ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac > "$OUT/$step.log" 2>&1
  echo "   rc=$? in $(( $(date +%s) - start )) s (log: $OUT/$step.log)"
done
