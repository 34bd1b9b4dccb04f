#!/usr/bin/env bash
# The paper's CIFAR-10 results on one GPU, without network (issue 15): the `paper` preset
# (docs/PAPER_PRESET.md: convnet13, GCN + ZCA, noise 0.15, 8 test-time views) at 1,000, 2,000 and
# 4,000 labels in JAX, and PyTorch for one cell (1,000 labels), then a Markdown table beside the
# paper's accuracies (82.12%, 85.78%, 88.35%).
#
#   here, once:    python benchmarks/pack_cifar.py     # -> .gpu_data/cifar10-jpeg.tar.gz (the JPEG tree)
#   on the GPU:    bash benchmarks/reproduce_paper.sh [--steps N | --epochs N | --full]
#                  (device tool: carry [".gpu_data"]; the default budget fits about 10 minutes)
#   CPU dry run:   bash benchmarks/reproduce_paper.sh --steps 2 --device cpu --archive A.tar.gz -- KEY=VALUE ...
#
# Budget: --steps N trains N steps per run (default 300: a guess at four runs, decoding, ZCA
# statistics and compilation in about 10 minutes of one GPU, not measured: no GPU was at hand
# when it was written; the images/s lines say how far it can grow), --epochs N
# trains N epochs of 3,125 steps (the preset's; it evaluates after each), --full the preset's 50
# epochs (156,250 steps, hours per run). The learning rate decays over the steps a run has, as the
# preset's schedule does over 50 epochs. Other options: --labels (1000,2000,4000: the JAX cells),
# --torch-labels (1000; "" for none), --device (cuda | cpu), --archive (.gpu_data/cifar10-jpeg.tar.gz),
# and after `--`, config overrides applied to every run (a CPU dry run shrinks the batches with them).
# Env: PYTHON (python3), PIP_INSTALL (1: install this checkout without dependencies or network),
# WORK (/tmp/sesemi-reproduce: data, runs, cache), OUT (where results go; ./gpu_results when unset).
#
# Every run is its own process (JAX and torch never share the GPU's memory), one after the other.
# As each ends, its images/s line is printed and $OUT/results.md (the table) and $OUT/runs.tar.gz
# (configs, metrics and summaries, no checkpoints) are rewritten, so a slot that ends early keeps
# the finished runs. In the same WORK, a finished run is reported again as it is and a stopped one
# resumes from its last checkpoint with its own config. The data is the JPEG tree
# (benchmarks/pack_cifar.py), lossy re-encodings of the official images, so accuracies are
# comparable to the paper's, not identical inputs.
# Exit status: 0 every run finished, 2 a run failed or an option is wrong, 3 a framework cannot see the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/offline_env.sh

STEPS=300
EPOCHS=""
LABELS=1000,2000,4000
TORCH_LABELS=1000
DEVICE=cuda
ARCHIVE=.gpu_data/cifar10-jpeg.tar.gz
OVERRIDES=()
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in --steps|--epochs|--labels|--torch-labels|--device|--archive)
        [ $# -ge 2 ] || { echo "error: $1 needs a value (see --help)" >&2; exit 2; } ;;
    esac
    case "$1" in
        --steps) STEPS=$2; EPOCHS=""; shift 2 ;;
        --epochs) STEPS=$2; EPOCHS=$2; shift 2 ;;
        --full) STEPS=156250; EPOCHS=""; shift ;;
        --labels) LABELS=$2; shift 2 ;;
        --torch-labels) TORCH_LABELS=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --archive) ARCHIVE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; OVERRIDES=("$@"); break ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$STEPS" in ''|*[!0-9]*|0) echo "error: the budget must be a positive number of steps or epochs, got '$STEPS'" >&2; exit 2 ;; esac
[ -n "$EPOCHS" ] && STEPS=$(( EPOCHS * 3125 ))
case "$DEVICE" in cuda|cpu) ;; *) echo "error: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac

PYTHON=${PYTHON:-python3}
PIP_INSTALL=${PIP_INSTALL:-1}
WORK=${WORK:-/tmp/sesemi-reproduce}
RESULTS=${OUT:-$PWD/gpu_results}
mkdir -p "$RESULTS" "$WORK/runs"
export PYTHONUNBUFFERED=1 SESEMI_CACHE_DIR="$WORK/cache" XLA_PYTHON_CLIENT_PREALLOCATE=false
[ "$DEVICE" = cpu ] && export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""

cells() {  # "framework labels" per run, JAX first
    local n
    for n in ${LABELS//,/ }; do echo "jax $n"; done
    for n in ${TORCH_LABELS//,/ }; do echo "torch $n"; done
}

sees_device() {  # framework -> status 0 when it can train on $DEVICE
    [ "$DEVICE" = cpu ] && return 0
    if [ "$1" = jax ]; then
        "$PYTHON" -c 'import jax, sys; print("jax", jax.__version__, jax.devices()); sys.exit(jax.default_backend() != "gpu")'
    else
        "$PYTHON" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.cuda.is_available()); sys.exit(not torch.cuda.is_available())'
    fi
}

publish() {
    local runs=("$WORK"/runs/*/)
    [ -e "${runs[0]}" ] || return 0
    "$PYTHON" benchmarks/reproduce_paper.py table "${runs[@]}" --out "$RESULTS/results.md" > /dev/null
    (cd "$WORK" && tar -czf "$RESULTS/runs.tar.gz" --exclude=checkpoints --exclude=weights --exclude='*.npz' runs 2>/dev/null)
}

main() {
    local started=$SECONDS status=0
    echo "== reproduce_paper: the paper preset, $STEPS steps per run ($(( STEPS / 3125 )) full epochs), device $DEVICE"
    print_gpu
    local data
    data=$(unpack_archive "$ARCHIVE" "$WORK/data") || return 2
    use_checkout "$PYTHON" "$PIP_INSTALL"
    echo "data: $(find "$data" -type f | wc -l) images in $data ($(( SECONDS - started )) s so far)"

    local framework labels run seen_jax="" seen_torch=""
    while read -r framework labels; do
        run="$WORK/runs/$framework-$labels"
        if [ "$framework" = jax ] && [ -z "$seen_jax" ]; then sees_device jax && seen_jax=yes || seen_jax=no; fi
        if [ "$framework" = torch ] && [ -z "$seen_torch" ]; then sees_device torch && seen_torch=yes || seen_torch=no; fi
        if { [ "$framework" = jax ] && [ "$seen_jax" = no ]; } || { [ "$framework" = torch ] && [ "$seen_torch" = no ]; }; then
            echo "SKIPPED $framework $labels labels: $framework does not see the GPU"
            status=3
            continue
        fi
        echo "== $framework, $labels labels ($(( SECONDS - started )) s so far)"
        local device_option=()
        [ "$framework" = torch ] && device_option=(--device "$DEVICE")
        local command=(--config paper data.dataset=imagefolder "data.root=$data" "data.n_labels=$labels"
                       "train.steps=$STEPS" "${OVERRIDES[@]}")
        if [ -f "$run/summary.json" ]; then
            echo "note: $run is finished, reported as it is"
            command=()
        elif [ -f "$run/config.json" ]; then
            echo "note: $run stopped before its end: resuming it with its own config"
            command=(--resume)
        fi
        if [ ${#command[@]} -gt 0 ] && ! "$PYTHON" -m "sesemi_$framework.cli" train --run-dir "$run" --no-progress \
                "${device_option[@]}" "${command[@]}" > "$WORK/train-$framework-$labels.log" 2>&1; then
            echo "error: the $framework run at $labels labels failed; the end of its log:"
            tail -n 5 "$WORK/train-$framework-$labels.log"
            status=2
        fi
        "$PYTHON" benchmarks/reproduce_paper.py speed "$run"
        publish
    done < <(cells)

    echo "== results ($(( SECONDS - started )) s in all)"
    publish
    cat "$RESULTS/results.md" 2>/dev/null
    echo "== reproduce_paper done, exit status $status; results in $RESULTS"
    return $status
}

main 2>&1 | tee -a "$RESULTS/log.txt"
exit "${PIPESTATUS[0]}"
