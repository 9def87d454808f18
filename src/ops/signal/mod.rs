//! The signal ops.
mod dft;
mod window;

pub use dft::*;
pub use window::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &HANN_WINDOW,
    &HAMMING_WINDOW,
    &BLACKMAN_WINDOW,
    &DFT,
];
