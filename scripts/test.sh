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
# The training-graph tests (tests/rewrite_ort.rs) run the step graph in
# onnxruntime: a venv with numpy, onnx and onnxruntime, unless
# $ADAMP_GRAPH_PYTHON already names a Python that has them.
if [ -z "${ADAMP_GRAPH_PYTHON:-}" ]; then
    PYENV="target/test-python"
    if ! "$PYENV/bin/python" -c "import numpy, onnx, onnxruntime" >/dev/null 2>&1; then
        echo "test.sh: installing numpy, onnx and onnxruntime into $PYENV"
        if ! python3 -m venv "$PYENV" >/dev/null 2>&1; then
            SUDO=""
            [ "$(id -u)" -eq 0 ] || SUDO="sudo"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
            rm -rf "$PYENV"
            python3 -m venv "$PYENV"
        fi
        "$PYENV/bin/pip" install -q --disable-pip-version-check numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0
    fi
    export ADAMP_GRAPH_PYTHON="$PWD/$PYENV/bin/python"
fi
# The Vulkan loader complains without it; harmless, but noisy.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --locked --all-targets
