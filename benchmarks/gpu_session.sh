#!/usr/bin/env bash
# Every GPU check of a short device lease in one command (issue 26): the paper preset
# (reproduce_paper.sh) and the throughput table (gpu_check.sh), each part under its own time cap
# so that a slow or broken part leaves the others their time, and everything written so far packed
# into $OUT/session.tar.gz after every part (the device tool brings back 8 files at most, and
# nothing of a command killed at its limit but what is already under $OUT).
#
#   here, once:  python benchmarks/pack_cifar.py        # -> .gpu_data/cifar10-jpeg.tar.gz
#   on the GPU:  bash benchmarks/gpu_session.sh         # device tool: carry [".gpu_data"], timeout_s 480
#
# Parts, in order: versions and devices; the paper preset at 1,000 labels in JAX and PyTorch;
# gpu_check.sh on resnet20 and WRN-28-2 (fp32 and bf16; the JAX step on the device and in host
# placement, PyTorch eager and channels_last; three timed repetitions; the no-host-sync check);
# the paper preset at 4,000 and 2,000 labels in JAX. A full paper run (156,250 steps) does not fit
# a lease: PAPER_STEPS steps per run (default 3,125, one of the preset's epochs; the learning rate
# decays over the steps a run has), and the table's images/s give the full schedule's hours.
# Env: PAPER_STEPS (3125), CAP_PAPER_A (180), CAP_CHECK (150), CAP_PAPER_B (90) seconds,
#      PYTHON (python3), SESSION (/tmp/sesemi-gpu-session: logs and tables), OUT (./gpu_results
#      when unset); for a CPU dry run also PAPER_ARGS (appended to reproduce_paper.sh), CHECK_STEPS,
#      MODELS, DEVICE=cpu and SKIP_INSTALL=1 (read by gpu_check.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-$PWD/gpu_results}
SESSION=${SESSION:-/tmp/sesemi-gpu-session}
PYTHON=${PYTHON:-python3}
PAPER_STEPS=${PAPER_STEPS:-3125}
mkdir -p "$RESULTS" "$SESSION/check" "$SESSION/paper"
# reproduce_paper.sh's data, runs and training logs; both of its parts share them.
export WORK=${WORK:-$SESSION/reproduce}
export PYTHON PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

pack() {  # everything so far, as one file
    (cd "$SESSION" && tar -czf "$RESULTS/session.tar.gz.part" check paper preflight.txt "$WORK"/train-*.log 2>/dev/null)
    mv "$RESULTS/session.tar.gz.part" "$RESULTS/session.tar.gz"
}

part() {  # part NAME CAP COMMAND...: run it under its cap, say how it ended, pack
    local name=$1 cap=$2 started=$SECONDS status
    shift 2
    echo "=== $name (cap $cap s)"
    timeout --kill-after=10 "$cap" "$@"
    status=$?
    [ $status = 124 ] && echo "=== $name: stopped at its cap of $cap s"
    echo "=== $name: exit $status after $(( SECONDS - started )) s"
    pack
}

preflight() {
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    nproc
    "$PYTHON" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|jax-cuda[0-9]*-plugin|flax|optax|orbax-checkpoint|torch|torchvision|numpy|pillow|tensorboard) '
    "$PYTHON" -c 'import jax, torch; print("jax devices", jax.devices(), "| torch cuda", torch.cuda.is_available())'
    PYTHONPATH=$PWD "$PYTHON" -c 'import sesemi_jax.train, sesemi_torch.train; print("sesemi imports: ok")'
}

preflight 2>&1 | tee "$SESSION/preflight.txt"
pack
OUT=$SESSION/paper part paper-1000 "${CAP_PAPER_A:-180}" \
    bash benchmarks/reproduce_paper.sh --steps "$PAPER_STEPS" --labels 1000 --torch-labels 1000 ${PAPER_ARGS:-}
OUT=$SESSION/check MODELS=${MODELS:-resnet20,wrn28_2} \
    STEPS="${CHECK_STEPS:---repeats 3 --steps-per-repeat 20 --warmup 3} --variants jax,jax_host,torch_eager,torch_channels_last" \
    part gpu_check "${CAP_CHECK:-150}" bash benchmarks/gpu_check.sh
# The same reproduce_paper.sh WORK as the first part: its runs are reported again, the new ones added to the table.
OUT=$SESSION/paper part paper-4000-2000 "${CAP_PAPER_B:-90}" \
    bash benchmarks/reproduce_paper.sh --steps "$PAPER_STEPS" --labels 4000,2000 --torch-labels "" ${PAPER_ARGS:-}
echo "=== tables"
cat "$SESSION/paper/results.md" "$SESSION"/check/throughput_*.txt 2>/dev/null | grep '^|'
