//! The integration tests, as modules of one test binary: every test binary
//! links the library (and wgpu) again, so one binary keeps the build short.
//! Run one group with `cargo test --test suite zoo::`.

mod common;

mod bench_cli;
mod errors;
mod exec_zoo;
mod train_cli;
mod fuzz_corpus;
mod golden_optim;
mod gpu_optim;
mod hostile;
mod onnx_write;
mod op_sweep;
mod registry;
mod rewrite;
mod rewrite_ort;
mod rules;
mod shape_arith;
mod snapshots;
mod soundness_random;
mod soundness_random_cnn;
mod train_fixtures;
mod zoo;
