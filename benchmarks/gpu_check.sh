#!/usr/bin/env bash
# Train-step throughput of both frameworks on NVIDIA GPUs: resnet20, WRN-28-2 and resnet18, fp32 and
# bf16 (train.precision), JAX on one and on all GPUs and in host placement (jax_host: batches gathered from a
# memory-mapped copy and prefetched, docs/placement.md), then the no-host-sync check of the JAX step.
#
#     bash benchmarks/gpu_check.sh            # from anywhere; results in $OUT, else ./gpu_results
#
# Overrides for a dry run of this script on a CPU: DEVICE=cpu SKIP_INSTALL=1 PYTHON=... and
# STEPS="--repeats 1 --steps-per-repeat 1 --warmup 1 --batch-labeled 8 --batch-unlabeled 2".
#
# For a machine whose image already holds jax (with CUDA), flax, optax, torch and torchvision
# and has no network: the package is installed without dependencies and without build
# isolation (which would fetch setuptools). JSON tables, the printed Markdown tables and an
# environment log land in the results folder. jax_ynnpack is a CPU-only variant and is skipped
# on the GPU; with one GPU the jax_all row says "1 device".
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/offline_env.sh
RESULTS="${OUT:-./gpu_results}"
mkdir -p "$RESULTS"
PYTHON="${PYTHON:-python}"
# JAX would otherwise take 75% of the GPU memory up front and leave torch the rest.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

use_checkout "$PYTHON" "$([ -n "${SKIP_INSTALL:-}" ] || echo 1)" "$RESULTS/pip.log"

{
    print_gpu
    "$PYTHON" - <<'EOF'
import jax, torch
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if jax.default_backend() != "gpu":
    print("WARNING: JAX does not see the GPU; its rows below are CPU numbers")
EOF
} 2>&1 | tee "$RESULTS/environment.txt"

DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:---repeats 7 --steps-per-repeat 50 --warmup 10}"
MODELS="${MODELS:-resnet20,wrn28_2,resnet18}"
for MODEL in ${MODELS//,/ }; do
    echo "== $MODEL fp32 and bf16"
    # shellcheck disable=SC2086
    "$PYTHON" benchmarks/throughput.py --models "$MODEL" --device "$DEVICE" --precisions fp32,bf16 $STEPS \
        --json "$RESULTS/throughput_$MODEL.json" 2>&1 | tee "$RESULTS/throughput_$MODEL.txt" \
        || echo "throughput.py failed for $MODEL (see throughput_$MODEL.txt)"
done
echo "== no host sync in the JAX step"
"$PYTHON" benchmarks/throughput.py --profile --models "$MODELS" --json "$RESULTS/profile.json" 2>&1 \
    | tee "$RESULTS/profile.txt" || echo "the no-host-sync check failed (see profile.txt)"
