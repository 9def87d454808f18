//! Training data on the host: NumPy `.npz` archives read into typed,
//! little-endian arrays (and written back, for predictions).
//!
//! Nothing here knows about models or devices; `train` checks that the arrays
//! fit the model's inputs.

pub mod npz;

pub use npz::{read_npz, write_npz, Array, DataError, ElemType, Npz};
