#!/usr/bin/env bash
# Launch vqkit-train on this node with project-local caches and safe NCCL settings.
#   scripts/launch.sh [--safe] [--gpus N] -- --config configs/stage1_3d.yaml [vqkit-train args]
# Multi-node: scripts/slurm/train.sbatch calls this on every node with rendezvous from Slurm.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/launch.sh [--safe] [--gpus N] -- [vqkit-train arguments]

Runs vqkit-train on this node under torchrun, one process per GPU, with the caches inside the project
(.cache/: HF_HOME, TORCH_HOME, triton, torch extensions, matplotlib), OMP_NUM_THREADS shared among the
processes, NCCL timeouts, and a 600 s shutdown timeout so that a SIGTERM (Slurm) lets the run save a
checkpoint first.

options:
  --gpus N    processes on this node (default: $GPUS, else nvidia-smi's GPU count; at least 1)
  --safe      for flaky fabrics: no InfiniBand / P2P, blocking NCCL waits, DeepSpeed ZeRO-2, batch 1 per GPU
  -h, --help  this text (nothing is run or created)

Several nodes: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, RDZV_ID (scripts/slurm/train.sbatch sets them).
vqkit-train's own arguments: vqkit-train --help.

example:
  scripts/launch.sh --gpus 8 -- --config configs/stage1_3d.yaml --deepspeed configs/deepspeed/zero2.json
USAGE
}

repo="$(cd "$(dirname "$0")/.." && pwd)"
gpus="${GPUS:-}"
safe=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --safe) safe=1; shift ;;
    --gpus)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || { echo "scripts/launch.sh: error: --gpus needs a number (--help)" >&2; exit 2; }
      gpus="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
# GPUs on this node: nvidia-smi's count (0 without it: one CPU process below).
[[ -n "$gpus" ]] || gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
[[ "$gpus" -ge 1 ]] || gpus=1

# Caches inside the project (home quotas on clusters are small; compute nodes may lack $HOME).
export HF_HOME="${HF_HOME:-$repo/.cache/huggingface}"
export TORCH_HOME="${TORCH_HOME:-$repo/.cache/torch}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$repo/.cache/triton}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$repo/.cache/torch_extensions}"
export MPLCONFIGDIR="${MPLCONFIGDIR:-$repo/.cache/matplotlib}"
mkdir -p "$HF_HOME" "$TORCH_HOME" "$TRITON_CACHE_DIR" "$TORCH_EXTENSIONS_DIR" "$MPLCONFIGDIR"
export TOKENIZERS_PARALLELISM=false
# CPU threads per process: the CPUs Slurm gave this node shared among its processes, else 8 each.
cpus="${SLURM_CPUS_PER_TASK:-$((8 * gpus))}"
threads=$((cpus / gpus))
[[ "$threads" -ge 1 ]] || threads=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}"

# NCCL: fail loudly instead of hanging, and surface the reason.
export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"
export NCCL_TIMEOUT="${NCCL_TIMEOUT:-1800}"
export VQKIT_DIST_TIMEOUT_MIN="${VQKIT_DIST_TIMEOUT_MIN:-30}"
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# On SIGTERM (Slurm preemption, the time limit) each worker finishes its step and saves a checkpoint;
# torchrun would SIGKILL it after 30 s. Let Slurm's KillWait be the only limit.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-600}"
extra=()
if [[ "$safe" == 1 ]]; then
  # Conservative preset for flaky fabrics: no InfiniBand / P2P, blocking waits, ZeRO-2, small batch.
  export NCCL_IB_DISABLE=1 NCCL_P2P_DISABLE=1 TORCH_NCCL_BLOCKING_WAIT=1
  extra+=(--deepspeed configs/deepspeed/zero2.json --set train.batch_size_per_gpu=1)
fi

cd "$repo"
exec torchrun \
  --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
  --nproc_per_node "$gpus" \
  --rdzv_backend c10d --rdzv_endpoint "${MASTER_ADDR:-127.0.0.1}:${MASTER_PORT:-29500}" \
  --rdzv_id "${RDZV_ID:-vqkit}" \
  -m vqkit.train "$@" "${extra[@]}"
