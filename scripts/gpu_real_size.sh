#!/usr/bin/env bash
# The stage-1 architecture at its real size with random weights (VGGT-1B aggregator + Qwen3-4B from its
# known config, LoRA, bf16) on one GPU, on synthetic rooms at the real input size (8 views, 448 px): the
# performance check of the performance work at real size, before and after, as JSON files in OUT_DIR
# (at most 8 files: what the device machine sends back):
#
#   env.json           the card, driver, torch/transformers/peft/liger versions, the stages, and per stage its
#                      exit status and seconds; "liger_check": Liger on vs off on a small Qwen3 on this GPU
#   bench.json         `vqkit bench` at BATCH with this code: s/step from images and cached features, model
#                      and hardware FLOPs per part and their utilisation (mfu_model*, mfu_hardware*), attention
#                      kernels, padding share, peak memory, the aggregator's 8 x 518 forward; and the same
#                      samples unpadded and packed (its "packing" section: padding share, label tokens/s, parts)
#   packing.json       `vqkit bench` at BATCH with data.packing=true: the packed step's MFU, memory and kernels
#   before_bench.json  `vqkit bench` at BATCH with the code before the change (.before/, see `prepare`)
#   encoder.json       `vqkit bench --encoder-only`: the aggregator on 8 frames of 518 px, {"eager", "compiled"}
#   plan.json          `vqkit plan` at BATCH (memory, and the plan's gradient-checkpointing decision); with PROBE=1
#                      `vqkit plan --probe` up to MAX_BATCH instead (the same plan, and real steps beside it)
#   summary.json       scripts/gpu_real_size_summary.py: the acceptance figures (MFU >= 35% cached / 30% from
#                      images, aggregator 8 x 518 <= 0.11 s, plan within 10% of the measured peak; packed over
#                      unpacked), written again after every stage, so a run cut short still reports what it
#                      measured
#   log.txt            everything printed
#
#   scripts/gpu_real_size.sh prepare             on the CPU machine, once: the data, .before/ and .whl/ below
#   scripts/gpu_real_size.sh [OUT_DIR] [k=v ...] on the GPU machine (k=v: config overrides for every command)
#   DRY_RUN=1 scripts/gpu_real_size.sh OUT_DIR   the same stages end to end on this CPU at a tiny size
#
# Environment: CONFIG (configs/stage1_3d.yaml), DATA (data/synth448), BATCH (16, the H200 figures' batch),
# STEPS (3),
# STAGES (default "liger after packing before encoder plan", most important first; add "probe" or set PROBE=1),
# MAX_BATCH (64), LIGER (1 = model.llm.liger_kernels for the "after" bench when liger-kernel is importable and
# passes the liger check; 0 = off), DEADLINE_S (540: no stage starts, and a running one is stopped, after that
# many seconds, so the whole run ends inside the device machine's 600 s per command), PYTHON (python3).
# A stage that fails is logged with its exit status and the next one runs.
#
# No weights are downloaded: the aggregator is randomly initialised (model.encoder.weights=null) and the LLM is
# built from Qwen/Qwen3-4B-Instruct-2507's architecture (model.llm.from_config=true), so speed and memory are the
# real model's and the answers are noise. The GPU machine reaches no network: `prepare` makes what it needs here
# (synthetic rooms need open3d; the "before" code; Liger's wheel), to be carried along:
#   run(command="bash scripts/gpu_real_size.sh", carry=["data/synth448", ".before", ".whl"], timeout_s=600)
set -euo pipefail
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# vqkit from this checkout for scripts/*.py too (the GPU machine has no installed vqkit)
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
STARTED=$SECONDS

prepare_before() {  # the package and configs as they were before the change, for the "before" bench
    # 8d1d348 is the first commit of the performance work at real size; its parent is "before"
    local ref=${BEFORE_REF:-8d1d34812b782b07311a3d13747a3f9f4790dc81^}
    rm -rf .before && mkdir -p .before
    git archive "$ref" vqkit configs | tar -x -C .before
    git rev-parse "$ref" > .before/COMMIT
    echo "== .before: vqkit and configs at $(cat .before/COMMIT)"
}

if [ "${1:-}" = "prepare" ]; then
    DATA=${DATA:-data/synth448}
    if [ ! -f "$DATA/train.jsonl" ]; then
        echo "== synthetic rooms at the real input size into $DATA (8 rooms: ~4 MB to carry)"
        $PY -m vqkit synth --out "$DATA" --scenes 8 --views 8 --image-size 448 --workers "$(nproc)" --quiet
    fi
    prepare_before
    rm -rf .whl
    # liger-kernel is pure Python (its kernels are Triton, which the GPU machine's torch brings).
    $PY -m pip download -q --no-deps -d .whl "liger-kernel==${LIGER_VERSION:-0.8.5}"
    echo "== ready: run(command=\"bash scripts/gpu_real_size.sh\", carry=[\"$DATA\", \".before\", \".whl\"], timeout_s=600)"
    du -sh "$DATA" .before .whl
    exit 0
fi

OUT_DIR=${1:-${OUT:-runs/gpu_real_size}}
shift || true
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
exec > >(tee -a "$OUT_DIR/log.txt") 2>&1

if [ -n "${DRY_RUN:-}" ]; then
    # The same stages at a tiny size on the CPU: the demo's model on a handful of synthetic rooms.
    CONFIG=${CONFIG:-configs/first_demo.yaml}
    DATA=${DATA:-$OUT_DIR/tmp_synth}
    BATCH=${BATCH:-4}
    STEPS=${STEPS:-1}
    DEVICE=(--device cpu)
    [ -f "$DATA/train.jsonl" ] || $PY -m vqkit synth --out "$DATA" --scenes 6 --views 4 --image-size 112 --quiet
    [ -d .before/vqkit ] || prepare_before
    overrides=(--set data.num_workers=0)
    GPU_MEM=8
    DEADLINE_S=${DEADLINE_S:-3600}
else
    CONFIG=${CONFIG:-configs/stage1_3d.yaml}
    DATA=${DATA:-data/synth448}
    BATCH=${BATCH:-16}
    STEPS=${STEPS:-3}
    DEVICE=()
    overrides=(--set model.encoder.weights=null --set model.llm.from_config=true)
    if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    GPU_MEM=${GPU_MEM:-$($PY -c 'import torch; print(round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))')}
    DEADLINE_S=${DEADLINE_S:-540}
fi
for extra in "$@"; do overrides+=(--set "$extra"); done
STAGES=${STAGES:-liger after packing before encoder plan}
[ -n "${PROBE:-}" ] && STAGES="$STAGES probe"
[ -f "$DATA/train.jsonl" ] || { echo "no $DATA/train.jsonl: run 'scripts/gpu_real_size.sh prepare' on the CPU machine"; exit 2; }
DATA=$(realpath "$DATA")
after_overrides=("${overrides[@]}")

note_env() {  # note_env KEY JSON: one entry of env.json
    $PY -c 'import json, sys; p = sys.argv[1]; e = json.load(open(p)); e[sys.argv[2]] = json.loads(sys.argv[3]); json.dump(e, open(p, "w"), indent=1)' \
        "$OUT_DIR/env.json" "$1" "$2"
}

summary() {
    $PY scripts/gpu_real_size_summary.py "$OUT_DIR" --config "$CONFIG" --data "$DATA" \
        $(for ((i = 1; i < ${#after_overrides[@]}; i += 2)); do echo "--set ${after_overrides[i]}"; done) \
        > /dev/null || echo "(summary failed)"
}

$PY - "$OUT_DIR/env.json" "$STAGES" <<'EOF'
import json, subprocess, sys, torch, transformers, peft
try:
    import liger_kernel, importlib.metadata as md; liger = md.version("liger-kernel")
except ImportError:
    liger = None
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip() if torch.cuda.is_available() else None
env = {"gpu": smi, "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
       "liger_kernel": liger, "stages": sys.argv[2].split(), "stage_status": {}}
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(env)
EOF

run_stage() {  # the commands of one stage; runs in a subshell with errexit on
    local stage=$1
    local bench_args=(--data "$DATA" --batch-size "$BATCH" --steps "$STEPS" --warmup 1 --data-batches 4 "${DEVICE[@]}" --json)
    case $stage in
    liger)
        # Liger's kernels on this GPU, on vs off on a small Qwen3 (the loss and LoRA gradients); the "after"
        # bench uses them only when this passes. Writes a liger_ok marker under /tmp.
        if [ -n "${DRY_RUN:-}" ] || [ "${LIGER:-1}" != 1 ]; then echo "== liger: not asked for"; return 0; fi
        if ! $PY -c 'import liger_kernel' 2> /dev/null; then echo "== liger: liger-kernel not importable (prepare's .whl/)"; return 0; fi
        echo "== liger: Liger's kernels on vs off on a small Qwen3 on this GPU"
        $PY scripts/gpu_liger_check.py --json > /tmp/liger_check.json || true
        note_env liger_check "$(cat /tmp/liger_check.json)"
        cat /tmp/liger_check.json
        $PY -c 'import json, sys; sys.exit(0 if json.load(open("/tmp/liger_check.json"))["ok"] else 1)' \
            && touch /tmp/liger_ok ;;
    after)
        echo "== bench at batch $BATCH (this code${LIGER_SET:+, with the Liger kernels})"
        $PY -m vqkit bench --config "$CONFIG" "${bench_args[@]}" "${after_overrides[@]}" > "$OUT_DIR/bench.json.tmp"
        mv "$OUT_DIR/bench.json.tmp" "$OUT_DIR/bench.json"
        $PY -c 'import json, sys; from vqkit.tools.bench_report import format_table; print(format_table(json.load(open(sys.argv[1]))))' \
            "$OUT_DIR/bench.json" ;;
    packing)
        echo "== bench at batch $BATCH, trained packed (data.packing=true: the batch's samples in one row)"
        $PY -m vqkit bench --config "$CONFIG" "${bench_args[@]}" "${after_overrides[@]}" --set data.packing=true \
            > "$OUT_DIR/packing.json.tmp"
        mv "$OUT_DIR/packing.json.tmp" "$OUT_DIR/packing.json"
        $PY -c 'import json, sys; from vqkit.tools.bench_report import format_table; print(format_table(json.load(open(sys.argv[1]))))' \
            "$OUT_DIR/packing.json" ;;
    encoder)
        local name compiled
        for compiled in false true; do
            name=$([ $compiled = true ] && echo compiled || echo eager)
            echo "== the aggregator on 8 frames of 518 px ($name)"
            $PY -m vqkit bench --config "$CONFIG" --encoder-only --encoder-repeats 10 --warmup 3 "${DEVICE[@]}" \
                "${overrides[@]}" --set model.encoder.compile=$compiled --json > "/tmp/encoder_$name.json"
            $PY -c 'import json, sys; from vqkit.tools.bench_report import format_encoder; print(format_encoder(json.load(open(sys.argv[1]))))' \
                "/tmp/encoder_$name.json"
            # one file for both, written after each (what comes back from the GPU machine is at most 8 files)
            $PY -c 'import json, os, sys; d = sys.argv[1]; json.dump({n: json.load(open(f"/tmp/encoder_{n}.json")) for n in ("eager", "compiled") if os.path.isfile(f"/tmp/encoder_{n}.json")}, open(f"{d}/encoder.json", "w"), indent=1)' "$OUT_DIR"
        done ;;
    before)
        if [ ! -d .before/vqkit ]; then echo "== no .before/ (scripts/gpu_real_size.sh prepare): no before figures"; return 0; fi
        echo "== bench at batch $BATCH (the code before the change: $(cat .before/COMMIT 2>/dev/null))"
        (cd .before && PYTHONPATH="$REPO/.before${PYTHONPATH:+:$PYTHONPATH}" $PY -m vqkit bench --config "$CONFIG" \
            "${bench_args[@]}" "${overrides[@]}") > "$OUT_DIR/before_bench.json.tmp"
        mv "$OUT_DIR/before_bench.json.tmp" "$OUT_DIR/before_bench.json" ;;
    plan)
        echo "== plan at batch $BATCH on one GPU of ${GPU_MEM} GB"
        $PY -m vqkit plan --config "$CONFIG" --data "$DATA" --gpus 1 --gpu-mem "$GPU_MEM" --batch-size "$BATCH" \
            "${after_overrides[@]}" --json > "$OUT_DIR/plan.json"
        $PY -c 'import json, sys; p = json.load(open(sys.argv[1])); print({k: p.get(k) for k in ("batch_size_per_gpu", "predicted_mb", "capacity_mb", "gradient_checkpointing", "gradient_checkpointing_decided_by")})' \
            "$OUT_DIR/plan.json" ;;
    probe)
        # plan.json again, with the real steps beside the plan (at most 8 files come back from the GPU machine)
        echo "== probe: real steps up to batch ${MAX_BATCH:-64}"
        $PY -m vqkit plan --config "$CONFIG" --gpus 1 --gpu-mem "$GPU_MEM" --probe --data "$DATA" --batch-size "$BATCH" \
            --max-batch "${MAX_BATCH:-64}" "${DEVICE[@]}" "${after_overrides[@]}" --json > "$OUT_DIR/plan.json.tmp"
        mv "$OUT_DIR/plan.json.tmp" "$OUT_DIR/plan.json" ;;
    *) echo "unknown stage $stage (liger after packing before encoder plan probe)"; return 2 ;;
    esac
}

rm -f /tmp/liger_ok /tmp/encoder_eager.json /tmp/encoder_compiled.json
for stage in $STAGES; do
    if [ "$stage" = after ] && [ -f /tmp/liger_ok ]; then
        after_overrides=("${overrides[@]}" --set model.llm.liger_kernels=true)
        LIGER_SET=1
    fi
    left=$((DEADLINE_S - (SECONDS - STARTED)))
    if [ "$left" -lt 20 ]; then
        echo "== $stage: not run, ${left} s left of DEADLINE_S=$DEADLINE_S"
        note_env "stage_$stage" '{"status": "not run: deadline"}'
        continue
    fi
    t0=$SECONDS
    echo "== [$(date +%T), $((SECONDS - STARTED)) s in] stage $stage (at most $left s)"
    set +e
    # errexit inside: the stage stops at its first failing command; timeout ends it at the deadline.
    timeout --kill-after=15 "$left" bash -c "set -euo pipefail; $(declare -p PY DATA BATCH STEPS DEVICE overrides \
        after_overrides OUT_DIR REPO CONFIG GPU_MEM); LIGER_SET=${LIGER_SET:-}; $(declare -f run_stage note_env); run_stage $stage"
    status=$?
    set -e
    [ $status -eq 0 ] || echo "== stage $stage FAILED (exit $status$([ $status -eq 124 ] && echo ': the deadline'))"
    note_env "stage_$stage" "{\"status\": $status, \"seconds\": $((SECONDS - t0))}"
    summary
done
echo "== [$(date +%T), $((SECONDS - STARTED)) s in] summary ($OUT_DIR/summary.json)"
$PY scripts/gpu_real_size_summary.py "$OUT_DIR" --config "$CONFIG" --data "$DATA" \
    $(for ((i = 1; i < ${#after_overrides[@]}; i += 2)); do echo "--set ${after_overrides[i]}"; done)
