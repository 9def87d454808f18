//! Training: the device step (forward, backward and the optimizer in one
//! submission), the loop over a data set, learning-rate schedules, and
//! checkpoints that survive a crash or a full disk.
pub mod checkpoint;
#[cfg(feature = "gpu")]
pub mod run;
pub mod schedule;
#[cfg(feature = "gpu")]
pub mod step;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use schedule::{Decay, Schedule, ScheduleError, ScheduleKind};
