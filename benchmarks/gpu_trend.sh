#!/usr/bin/env bash
# Trend check on one NVIDIA GPU (issue 5): WRN-28-2 at 4,000 labels, SESEMI and the supervised
# baseline, in JAX and in PyTorch (channels_last), each with its own random streams, then the
# table and PASS/FAIL of benchmarks/trend.py. For a machine whose image already holds jax, flax,
# optax, orbax, torch and torchvision and has no network.
#
#   here, once:       python benchmarks/pack_cifar.py   # -> .gpu_data/cifar10-jpeg.tar.gz (18 MiB, git-ignored)
#   on the GPU:       bash benchmarks/gpu_trend.sh      # device tool: carry [".gpu_data"], timeout_s 600
#   CPU dry run:      STEPS=5 DEVICE=cpu BACKBONE=resnet20 PYTHON=.venv/bin/python PIP_INSTALL=0 \
#                     bash benchmarks/gpu_trend.sh
#
# The default budget (STEPS=2000, SEEDS=1: 4 runs) is sized so that the whole script, decoding
# and compilation included, should end inside the device tool's 10-minute command limit on an
# H100; the speed table it prints (ms/step per framework and method) tells how far STEPS and
# SEEDS can grow. With one seed the parity verdict falls back to the 1-point floor: indicative.
# Runs go in the order sesemi-jax, sesemi-torch, supervised-jax, supervised-torch, one process
# each (JAX and torch never share the GPU's memory), and results are published after every run,
# so a run cut off by a time limit still leaves the finished pairs in $OUT. Both frameworks use
# their GPU defaults for float32 convolutions (TF32 on Ampere and later in both).
#
# Env: STEPS (2000), SEEDS (1), LABELS (4000), BACKBONE (wrn28_2), EVAL_EVERY (STEPS/4),
#      FRAMEWORKS ("jax torch"), DEVICE (cuda | cpu), TORCH_THREADS (8), ARCHIVE
#      (.gpu_data/cifar10-jpeg.tar.gz), PYTHON (python3), PIP_INSTALL (1), WORK
#      (/tmp/sesemi-gpu-trend), OUT (where results go; ./gpu_results when unset).
# Writes $OUT/{log.txt, results.md, results.json, trend.png, runs.tar.gz (metrics, configs and
# summaries of every run, no checkpoints)}. Exit status: 0 all pass, 1 a parity cell fails,
# 2 a run failed, 3 a framework could not use the GPU and was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/offline_env.sh

STEPS=${STEPS:-2000}
SEEDS=${SEEDS:-1}
LABELS=${LABELS:-4000}
BACKBONE=${BACKBONE:-wrn28_2}
EVAL_EVERY=${EVAL_EVERY:-$(( STEPS >= 4 ? STEPS / 4 : STEPS ))}
FRAMEWORKS=${FRAMEWORKS:-jax torch}
DEVICE=${DEVICE:-cuda}
TORCH_THREADS=${TORCH_THREADS:-8}
ARCHIVE=${ARCHIVE:-.gpu_data/cifar10-jpeg.tar.gz}
PYTHON=${PYTHON:-python3}
PIP_INSTALL=${PIP_INSTALL:-1}
WORK=${WORK:-/tmp/sesemi-gpu-trend}
RESULTS=${OUT:-$PWD/gpu_results}

mkdir -p "$RESULTS" "$WORK"
export PYTHONUNBUFFERED=1 SESEMI_CACHE_DIR="$WORK/cache" XLA_PYTHON_CLIENT_PREALLOCATE=false
[ "$DEVICE" = cpu ] && export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""

main() {
    started=$SECONDS
    status=0
    echo "== gpu_trend: $BACKBONE, $LABELS labels, $STEPS steps, $SEEDS seed(s), eval every $EVAL_EVERY, device $DEVICE"
    print_gpu
    DATA=$(unpack_archive "$ARCHIVE" "$WORK/data") || return 2
    use_checkout "$PYTHON" "$PIP_INSTALL"
    echo "data: $(find "$DATA" -type f | wc -l) images in $DATA ($(( SECONDS - started )) s so far)"

    # Which frameworks can train on $DEVICE: each must see the GPU (otherwise JAX would fall back to
    # the CPU, which takes hours for WRN-28-2; the torch trainer refuses a device it cannot see).
    usable=$("$PYTHON" - "$DEVICE" $FRAMEWORKS <<'EOF'
import sys
device, frameworks = sys.argv[1], sys.argv[2:]
usable = []
for name in frameworks:
    try:
        if name == "jax":
            import jax
            platform = jax.devices()[0].platform
            print(f"jax {jax.__version__}: {jax.devices()}", file=sys.stderr)
            ok = device == "cpu" or platform == "gpu"
            why = f"jax sees no GPU (platform {platform})"
        else:
            import torch
            print(f"torch {torch.__version__}: cuda available {torch.cuda.is_available()}", file=sys.stderr)
            ok = device == "cpu" or torch.cuda.is_available()
            why = "torch sees no GPU"
    except Exception as err:  # a broken install: say so and go on with the other framework
        ok, why = False, f"{type(err).__name__}: {err}"
    if ok:
        usable.append(name)
    else:
        print(f"SKIPPED {name} on {device}: {why}", file=sys.stderr)
print(" ".join(usable))
EOF
    )
    [ "$usable" = "$FRAMEWORKS" ] || status=3
    echo "frameworks on $DEVICE: ${usable:-none}"

    STUDY=(--steps "$STEPS" --seeds "$SEEDS" --labels "$LABELS" --backbone "$BACKBONE" --eval-every "$EVAL_EVERY"
           --data-root "$DATA" --out "$WORK/study" --torch-device "$DEVICE" --torch-threads "$TORCH_THREADS")

    publish() {
        local frameworks
        frameworks=$(echo $FRAMEWORKS | tr ' ' ,)
        "$PYTHON" benchmarks/trend.py "${STUDY[@]}" --frameworks "$frameworks" --report-only > "$WORK/report.txt"
        local rc=$?
        cp -f "$WORK"/study/results.md "$WORK"/study/results.json "$WORK"/study/trend.png "$RESULTS"/ 2>/dev/null
        (cd "$WORK/study" && tar -czf "$RESULTS/runs.tar.gz" --exclude=checkpoints runs 2>/dev/null)
        return $rc
    }

    for method in sesemi supervised; do
        for framework in $usable; do
            echo "== $method, $framework ($(( SECONDS - started )) s so far)"
            "$PYTHON" benchmarks/trend.py "${STUDY[@]}" --frameworks "$framework" --methods "$method" \
                | grep -E '^\[[0-9]|^study wall|^error' || { echo "error: the $method $framework run failed"; status=2; }
            publish
        done
    done

    publish
    report_rc=$?
    cat "$WORK/report.txt"
    [ $report_rc -ne 0 ] && [ $status -eq 0 ] && status=1
    echo "== gpu_trend done in $(( SECONDS - started )) s, exit status $status; results in $RESULTS"
    return $status
}

main 2>&1 | tee -a "$RESULTS/log.txt"
exit "${PIPESTATUS[0]}"
