//! What a training run needs around the executor: learning-rate schedules and
//! checkpoints that survive a crash or a full disk.

pub mod checkpoint;
pub mod schedule;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use schedule::{Decay, Schedule, ScheduleError, ScheduleKind};
