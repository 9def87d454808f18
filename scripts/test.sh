#!/usr/bin/env bash
# The project's test command (README; .ci/run calls exactly this).
# GPU tests run on whatever Vulkan adapter exists; on a machine without one this
# installs Mesa's software driver (lavapipe) first, so they never silently skip.
set -euo pipefail
cd "$(dirname "$0")/.."

have_vulkan_icd() {
    local f
    for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json; do
        [ -e "$f" ] && return 0
    done
    return 1
}
have_vulkan_loader() {
    # no `grep -q`: with pipefail, ldconfig could die of SIGPIPE and fail the check
    ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null
}
if ! have_vulkan_icd || ! have_vulkan_loader; then
    echo "test.sh: no Vulkan driver found; installing mesa-vulkan-drivers (lavapipe) and libvulkan1"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: no apt-get here; install a Vulkan driver and loader (libvulkan.so.1) yourself" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
fi
# python3's venv module, installing python3-venv first where the machine lacks
# it (Debian's python3 comes without ensurepip). Checked once, up front: the
# venvs below are made in parallel, and two apt-gets would fight over the lock.
probe="$(mktemp -d)"
if ! python3 -m venv "$probe/venv" >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
rm -rf "$probe"
mkdir -p target

# The training-graph tests (tests/suite/rewrite_ort.rs) run the step graph in
# onnxruntime: a venv with numpy, onnx and onnxruntime, unless
# $ADAMP_GRAPH_PYTHON already names a Python that has them.
setup_test_python() {
    local env="target/test-python"
    if ! "$env/bin/python" -c "import numpy, onnx, onnxruntime" >/dev/null 2>&1; then
        echo "test.sh: installing numpy, onnx and onnxruntime into $env"
        rm -rf "$env"
        python3 -m venv "$env"
        "$env/bin/pip" install -q --disable-pip-version-check numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0
    fi
}
# The Python package (python/, issue 12) is tested in a venv with torch:
# PyPI's Linux torch wheel pulls its CUDA libraries (about 4 GB installed);
# `import torch` needs them even on a CPU.
TORCH_ENV="target/test-torch"
setup_test_torch() {
    if ! "$TORCH_ENV/bin/python" -c "import torch, torchvision, timm, adamp, onnx, pytest, maturin" >/dev/null 2>&1; then
        echo "test.sh: installing torch, torchvision, timm, adamp, onnx, pytest and maturin into $TORCH_ENV"
        rm -rf "$TORCH_ENV"
        python3 -m venv "$TORCH_ENV"
        "$TORCH_ENV/bin/pip" install -q --disable-pip-version-check torch==2.15.0 torchvision==0.29.2 timm==1.0.31 \
            adamp==0.3.0 onnx==1.23.2 numpy==2.4.6 pytest==9.2.0 maturin==1.16.0
    fi
}
# The venvs are mostly downloads: they are made while cargo builds the test
# binaries, each logging to target/, and a failure fails the run.
waits=()
# A failed build must not leave the installs running behind it.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
if [ -z "${ADAMP_GRAPH_PYTHON:-}" ]; then
    setup_test_python > target/test-setup-python.log 2>&1 &
    waits+=("$!:target/test-setup-python.log")
    export ADAMP_GRAPH_PYTHON="$PWD/target/test-python/bin/python"
fi
setup_test_torch > target/test-setup-torch.log 2>&1 &
torch_setup="$!:target/test-setup-torch.log"
# Waits for a background setup "PID:LOG", showing its log; its failure ends the run.
await() {
    local pid="${1%%:*}" log="${1#*:}"
    if ! wait "$pid"; then
        cat "$log" >&2
        echo "test.sh: the setup logged in $log failed" >&2
        exit 1
    fi
    cat "$log"
}
# The Vulkan loader complains without it; harmless, but noisy.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# One cargo run builds the test binaries and the Python binding's extension
# (python/, a cdylib; `cargo test --no-run` would build only its test harness):
# every crate they share is compiled once, with one feature set (a separate
# maturin build recompiled two dozen of them, 70-90 s on 2 cores). The
# `cargo test` below then finds every artifact fresh.
cargo build --locked --workspace --all-targets
for w in "${waits[@]}"; do await "$w"; done
cargo test --locked --workspace --all-targets

# The Python package: its sources and the extension that build made, laid out
# as the wheel lays them out, then its pytest suite (golden replay, official
# adamp, name mapping on torchvision/timm models, DDP and FSDP2 over gloo).
# `maturin sdist` checks the packaging configuration (module name, sources)
# without compiling again.
await "$torch_setup"
TARGET="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
STAGE="$TARGET/python-package"
ext=""
for f in "$TARGET/debug/lib_native.so" "$TARGET/debug/lib_native.dylib"; do
    [ -e "$f" ] && ext="$f" && break
done
if [ -z "$ext" ]; then
    echo "test.sh: the build made no Python extension (lib_native) in $TARGET/debug" >&2
    exit 1
fi
rm -rf "$STAGE" "$TARGET/python-sdist"
mkdir -p "$STAGE"
cp -R python/adamp_graph "$STAGE/"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
cp "$ext" "$STAGE/adamp_graph/_native.abi3.so"
if ! sdist_log="$("$TORCH_ENV/bin/maturin" sdist -m python/Cargo.toml -o "$TARGET/python-sdist" 2>&1)"; then
    echo "$sdist_log" >&2
    echo "test.sh: maturin refused the Python package's configuration (python/pyproject.toml)" >&2
    exit 1
fi
(cd python/tests && PYTHONPATH="$STAGE${PYTHONPATH:+:$PYTHONPATH}" "../../$TORCH_ENV/bin/python" -m pytest -q -p no:cacheprovider)
