#!/usr/bin/env bash
# Regenerates src/onnx/pb.rs (prost types for ONNX) from proto/onnx.proto.
# proto/onnx.proto is the schema the onnx-protobuf crate ships (ONNX IR v10).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --manifest-path tools/gen-proto/Cargo.toml
