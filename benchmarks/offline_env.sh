# Shared set-up of the GPU scripts (gpu_check.sh, gpu_trend.sh, reproduce_paper.sh) for a machine
# with no network whose image already holds jax, flax, optax, orbax, torch and torchvision.
# Sourced, not run. Each function prints what it did and returns non-zero only when the script
# cannot go on.

# The GPU's name, memory and driver, when there is an NVIDIA GPU.
print_gpu() {
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    return 0
}

# use_checkout PYTHON INSTALL [LOG]: this checkout on PYTHONPATH and, when INSTALL is 1, also
# installed into PYTHON's environment without dependencies and without build isolation (either
# would reach for the network).
use_checkout() {
    local python=$1 install=$2 log=${3:-}
    if [ "$install" = 1 ]; then
        "$python" -m pip install -q --no-deps --no-build-isolation -e . >"${log:-/dev/null}" 2>&1 \
            || echo "note: pip install failed${log:+ (see $log)}; the checkout is used through PYTHONPATH"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
}

# unpack_archive ARCHIVE DEST: the benchmarks/pack_cifar.py archive unpacked once under DEST;
# prints the data folder (its top-level directory) on stdout, errors on stderr.
unpack_archive() {
    local archive=$1 dest=$2 top
    if [ ! -f "$archive" ]; then
        echo "error: $archive not found: run 'python benchmarks/pack_cifar.py' here and carry .gpu_data" >&2
        return 2
    fi
    top=$(tar -tzf "$archive" | head -n 1 | cut -d/ -f1)
    mkdir -p "$dest"
    [ -d "$dest/$top" ] || tar -xzf "$archive" -C "$dest" || { echo "error: cannot unpack $archive" >&2; return 2; }
    echo "$dest/$top"
}
