#!/usr/bin/env bash
# The stage-1 architecture at its real size with random weights (VGGT-1B aggregator + Qwen3-4B from its
# known config, LoRA, gradient checkpointing, bf16) on one GPU, on synthetic rooms at the real input size
# (8 views, 448 px). Three figures, each a JSON file in OUT_DIR:
#   plan.json        `vqkit plan` at the configured batch (the prediction, nothing allocated)
#   bench.json       `vqkit bench`: s/step, samples/s, peak memory and MFU, uncached vs cached features
#   probe.json       `vqkit plan --probe`: real steps at batch 1, 2, 4, ... beside the plan, until out of memory
#
#   scripts/gpu_real_size.sh [OUT_DIR]          (DATA, BATCH, MAX_BATCH, STEPS override the defaults)
#
# No weights are downloaded: the aggregator is randomly initialised (model.encoder.weights=null) and the
# LLM is built from Qwen/Qwen3-4B-Instruct-2507's architecture (model.llm.from_config=true), so speed and
# memory are the real model's and the answers are noise. Extra arguments after OUT_DIR are passed to every
# command as config overrides (`--set key=value`).
set -euo pipefail
OUT_DIR=${1:-runs/gpu_real_size}
shift || true
CONFIG=${CONFIG:-configs/stage1_3d.yaml}
DATA=${DATA:-data/synth448}
BATCH=${BATCH:-16}
MAX_BATCH=${MAX_BATCH:-64}
STEPS=${STEPS:-3}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

overrides=(--set model.encoder.weights=null --set model.llm.from_config=true)
for extra in "$@"; do overrides+=(--set "$extra"); done

if [ ! -f "$DATA/train.jsonl" ]; then
    echo "== synthetic rooms at the real input size into $DATA"
    $PY -m vqkit synth --out "$DATA" --scenes 24 --views 8 --image-size 448 --workers "$(nproc)" --quiet
fi
GPU_MEM=${GPU_MEM:-$($PY -c 'import torch; print(round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))')}

echo "== plan at batch $BATCH on one GPU of ${GPU_MEM} GB"
$PY -m vqkit plan --config "$CONFIG" --data "$DATA" --gpus 1 --gpu-mem "$GPU_MEM" --batch-size "$BATCH" \
    "${overrides[@]}" --json > "$OUT_DIR/plan.json"
$PY -m vqkit plan --config "$CONFIG" --data "$DATA" --gpus 1 --gpu-mem "$GPU_MEM" --batch-size "$BATCH" "${overrides[@]}"

echo "== bench at batch $BATCH"
$PY -m vqkit bench --config "$CONFIG" --data "$DATA" --batch-size "$BATCH" --steps "$STEPS" --warmup 1 \
    --data-batches 4 "${overrides[@]}" --json > "$OUT_DIR/bench.json"
$PY - "$OUT_DIR/bench.json" <<'EOF'
import json, sys
from vqkit.tools.bench import format_table
print(format_table(json.load(open(sys.argv[1]))))
EOF

echo "== probe: real steps up to batch $MAX_BATCH"
$PY -m vqkit plan --config "$CONFIG" --gpus 1 --gpu-mem "$GPU_MEM" --probe --data "$DATA" --max-batch "$MAX_BATCH" \
    "${overrides[@]}" --json > "$OUT_DIR/probe.json"
$PY - "$OUT_DIR/probe.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["probe"]:
    if r["fits"]:
        print(f"batch {r['batch_size']:3d}: peak {r['peak_mb']:8.0f} MB, plan {r['predicted_mb']:8.0f} MB "
              f"({100 * (r['predicted_mb'] / r['peak_mb'] - 1):+.0f}%), sequence {r['seq_len']}, "
              f"{r['step_s']:.2f} s/step, {r['samples_per_s']:.1f} samples/s")
    else:
        print(f"batch {r['batch_size']:3d}: out of memory")
EOF
