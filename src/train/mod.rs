//! Training: the device step (forward, backward and the optimizer in one
//! submission), the loop over a data set, and what a run keeps and reports.
#[cfg(feature = "gpu")]
pub mod step;
#[cfg(feature = "gpu")]
pub mod run;
