//! The training loop: batches of a data set (in order, or shuffled with a
//! seed), one device step each, a record per step.
use super::step::{Array, ArrayData, TensorMetric, TrainError, Trainer};

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many passes over the data.
    Epochs(usize),
    /// After this many steps.
    Steps(usize),
}

/// How to go over the data.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Samples per batch (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// When to stop.
    pub stop: Stop,
    /// Shuffle the samples every epoch.
    pub shuffle: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Measure the paper's metrics every this many steps.
    pub metrics_every: Option<u64>,
}

/// One step, as the log records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    /// Step (1-based).
    pub step: u64,
    /// Epoch (1-based).
    pub epoch: u64,
    /// The batch's loss.
    pub loss: f64,
    /// The learning rate of the step.
    pub lr: f64,
    /// Samples per second of the step (wall clock, readback included).
    pub samples_per_s: f64,
    /// The batch's accuracy (cross-entropy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Steps taken.
    pub steps: u64,
    /// Epochs begun.
    pub epochs: u64,
    /// The last step's loss.
    pub last_loss: f64,
    /// Mean loss over the last epoch's steps.
    pub epoch_loss: f64,
    /// Accuracy over the last epoch (cross-entropy).
    pub epoch_accuracy: Option<f64>,
    /// Samples per second over the whole run.
    pub samples_per_s: f64,
    /// The last validation: mean loss and accuracy.
    pub validation: Option<(f64, Option<f64>)>,
}

/// A seeded permutation of `0..n` (splitmix64 and Fisher-Yates: the same on every machine).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Samples in the data set; every array must hold as many.
pub fn samples(data: &[Array]) -> Result<usize, TrainError> {
    let first = data.first().ok_or_else(|| TrainError::Data { array: "<data>".into(), detail: "holds no arrays".into() })?;
    let n = *first.dims.first().ok_or_else(|| TrainError::Data { array: first.name.clone(), detail: "is a scalar; the first dimension counts samples".into() })?;
    for a in data {
        if a.dims.first() != Some(&n) {
            return Err(TrainError::Data { array: a.name.clone(), detail: format!("has {} samples (dims {:?}); '{}' has {n}", a.dims.first().copied().unwrap_or(0), a.dims, first.name) });
        }
        if a.dims.iter().product::<usize>() != a.data.len() {
            return Err(TrainError::Data { array: a.name.clone(), detail: format!("{} elements for dims {:?}", a.data.len(), a.dims) });
        }
    }
    if n == 0 {
        return Err(TrainError::Data { array: first.name.clone(), detail: "holds no samples".into() });
    }
    Ok(n)
}

/// The rows `idx` of every array, as a batch.
pub fn gather(data: &[Array], idx: &[usize]) -> Vec<Array> {
    data.iter()
        .map(|a| {
            let row: usize = a.dims[1..].iter().product();
            let mut dims = a.dims.clone();
            dims[0] = idx.len();
            let data = match &a.data {
                ArrayData::F32(v) => ArrayData::F32(idx.iter().flat_map(|&i| v[i * row..(i + 1) * row].iter().copied()).collect()),
                ArrayData::I64(v) => ArrayData::I64(idx.iter().flat_map(|&i| v[i * row..(i + 1) * row].iter().copied()).collect()),
            };
            Array { name: a.name.clone(), dims, data }
        })
        .collect()
}

/// What the loop reports to its caller.
pub enum Event<'a> {
    /// A step was taken.
    Step {
        /// Its record.
        record: &'a StepRecord,
        /// The paper's metrics, when the step measured them.
        metrics: &'a [TensorMetric],
    },
    /// An epoch ended; validation ran when there is validation data.
    Epoch {
        /// The epoch (1-based).
        epoch: u64,
        /// Steps so far.
        step: u64,
        /// Mean loss and accuracy on the validation data.
        validation: Option<(f64, Option<f64>)>,
    },
}

/// Mean loss (weighted by samples) and accuracy over a data set, in batches, without updating.
pub fn evaluate(trainer: &mut Trainer, data: &[Array], batch_size: usize) -> Result<(f64, Option<f64>), TrainError> {
    let n = samples(data)?;
    let (mut loss, mut correct, mut counted) = (0.0f64, 0usize, 0usize);
    for lo in (0..n).step_by(batch_size.max(1)) {
        let idx: Vec<usize> = (lo..(lo + batch_size).min(n)).collect();
        let out = trainer.evaluate(&gather(data, &idx))?;
        loss += out.loss as f64 * idx.len() as f64;
        if let Some(c) = out.correct {
            correct += c;
            counted += idx.len();
        }
    }
    Ok((loss / n as f64, (counted > 0).then(|| correct as f64 / counted as f64)))
}

/// Trains until `opts.stop`, from the trainer's step count (a resumed run
/// continues where it stopped: same epoch, same batch, same order).
/// `lr_at(step)` gives each step's learning rate; `on_event` sees every step
/// and epoch end and may stop the run after it by returning false.
pub fn fit(
    trainer: &mut Trainer,
    data: &[Array],
    validation: Option<&[Array]>,
    opts: &LoopOptions,
    lr_at: &dyn Fn(u64) -> f64,
    on_event: &mut dyn FnMut(&mut Trainer, Event) -> Result<bool, TrainError>,
) -> Result<Summary, TrainError> {
    let n = samples(data)?;
    if opts.batch_size == 0 {
        return Err(TrainError::Data { array: "<batch>".into(), detail: "--batch-size must be at least 1".into() });
    }
    if let Some(v) = validation {
        samples(v)?;
    }
    let per_epoch = n.div_ceil(opts.batch_size) as u64;
    let total = match opts.stop {
        Stop::Epochs(e) => per_epoch * e as u64,
        Stop::Steps(k) => k as u64,
    };
    let start = std::time::Instant::now();
    let mut summary = Summary::default();
    let mut seen = 0usize;
    let mut step = trainer.steps();
    'run: while step < total {
        let epoch = step / per_epoch;
        let order = if opts.shuffle { permutation(n, opts.seed.wrapping_add(epoch)) } else { (0..n).collect() };
        let (mut sum, mut count, mut correct, mut counted) = (0.0f64, 0u64, 0usize, 0usize);
        let first = (step % per_epoch) as usize;
        for b in first..per_epoch as usize {
            if step >= total {
                break;
            }
            let idx = &order[b * opts.batch_size..((b + 1) * opts.batch_size).min(n)];
            let batch = gather(data, idx);
            let lr = lr_at(step + 1);
            // the first step too: its norm is ||w_0||, where growth is measured from
            let measure = opts.metrics_every.is_some_and(|k| k > 0 && (step == 0 || (step + 1) % k == 0));
            let t0 = std::time::Instant::now();
            let (out, metrics) = trainer.step_with(&batch, lr, measure)?;
            let dt = t0.elapsed().as_secs_f64().max(1e-9);
            step += 1;
            seen += idx.len();
            sum += out.loss as f64;
            count += 1;
            if let Some(c) = out.correct {
                correct += c;
                counted += out.samples;
            }
            let record = StepRecord {
                step,
                epoch: epoch + 1,
                loss: out.loss as f64,
                lr,
                samples_per_s: idx.len() as f64 / dt,
                accuracy: out.correct.map(|c| c as f64 / out.samples.max(1) as f64),
            };
            summary.steps = step;
            summary.epochs = epoch + 1;
            summary.last_loss = out.loss as f64;
            summary.epoch_loss = sum / count as f64;
            summary.epoch_accuracy = (counted > 0).then(|| correct as f64 / counted as f64);
            if !on_event(trainer, Event::Step { record: &record, metrics: &metrics })? {
                break 'run;
            }
        }
        if step % per_epoch == 0 || step == total {
            let v = match validation {
                Some(v) => Some(evaluate(trainer, v, opts.batch_size)?),
                None => None,
            };
            if let Some(v) = v {
                summary.validation = Some(v);
            }
            if !on_event(trainer, Event::Epoch { epoch: epoch + 1, step, validation: v })? {
                break 'run;
            }
        }
    }
    summary.samples_per_s = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_complete() {
        let p = permutation(100, 3);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(p, permutation(100, 3));
        assert_ne!(p, permutation(100, 4));
    }

    #[test]
    fn batches_take_rows_in_order() {
        let a = Array { name: "x".into(), dims: vec![3, 2], data: ArrayData::F32(vec![0., 1., 2., 3., 4., 5.]) };
        let b = gather(&[a], &[2, 0]);
        assert_eq!(b[0].dims, vec![2, 2]);
        match &b[0].data {
            ArrayData::F32(v) => assert_eq!(v, &vec![4., 5., 0., 1.]),
            _ => panic!("float"),
        }
    }
}
