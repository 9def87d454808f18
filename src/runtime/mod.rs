//! The GPU runtime: wgpu device selection and the AdamP/SGDP optimizer kernels
//! (`shaders/optim.wgsl`) over device-resident parameters, gradients and state.
pub mod bench;
pub mod device;
pub mod optim;

pub use device::{Gpu, GpuError, ADAPTER_ENV};
pub use optim::{Algorithm, Detect, DeviceOptimizer, Hyper, OptimError, Projected, TensorSpec};
