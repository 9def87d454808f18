//! The signal ops.
mod dft;
mod mel_weight_matrix;
mod stft;
mod window;

pub use dft::*;
pub use mel_weight_matrix::*;
pub use stft::*;
pub use window::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &HANN_WINDOW,
    &HAMMING_WINDOW,
    &BLACKMAN_WINDOW,
    &DFT,
    &STFT,
    &MEL_WEIGHT_MATRIX,
];
