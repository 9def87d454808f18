//! The GPU backend of [`crate::optim`]: wgpu device selection and the
//! AdamP/SGDP optimizer kernels (`shaders/optim.wgsl`) over device-resident
//! parameters, gradients and state.
pub mod bench;
pub mod device;
pub mod optim;
mod wgsl;

pub use device::{Gpu, GpuError, ADAPTER_ENV};
pub use optim::{DeviceOptimizer, OptimError, Tuning, Variant};
