//! Checkpoints that lose nothing: tensors as safetensors, the rest in a small
//! JSON manifest, one directory per step.
//!
//! ```text
//! DIR/step-000120/tensors.safetensors
//! DIR/step-000120/manifest.json
//! DIR/latest                 "step-000120"
//! ```
//!
//! A save writes both files into a temporary sibling directory, syncs them,
//! renames the directory into place, then replaces `latest` (temporary file,
//! sync, rename), and only then removes checkpoints beyond the last n. A
//! failure at any point (unwritable folder, full disk, crash) leaves every
//! earlier checkpoint and `latest` as they were: a `step-*` directory is
//! always complete, and `latest` names one. The manifest records the tensor
//! file's length and CRC-32, so truncation or damage is an error on load, not
//! wrong numbers. One writer per directory.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{Array, ElemType};

/// The manifest's `format` value.
const FORMAT: &str = "adamp-graph checkpoint";
/// The manifest layout this code writes and reads.
const VERSION: u32 = 1;
/// The tensor file in a checkpoint directory.
pub const TENSORS_FILE: &str = "tensors.safetensors";
/// The manifest in a checkpoint directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The pointer file naming the newest checkpoint.
pub const LATEST_FILE: &str = "latest";
/// Largest manifest read; a real one holds a configuration and RNG states.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Prefixes of the directories a save or prune leaves only while it runs
/// (or after a crash); they are never read as checkpoints.
const TEMP_PREFIX: &str = ".tmp-step-";
const RETIRED_PREFIX: &str = ".retired-step-";
const LATEST_TEMP_PREFIX: &str = ".latest-";

/// A training run's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs begun (the epoch the next step belongs to).
    pub epoch: u64,
    /// Parameters, optimizer state, BatchNorm buffers, ...: names unique.
    pub tensors: Vec<Array>,
    /// Everything else, free-form: the configuration, the data order's RNG
    /// state, the dropout counter.
    pub manifest: serde_json::Value,
}

impl Checkpoint {
    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Array> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// What saving or loading a checkpoint can go wrong with; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or directory could not be read, written, synced or renamed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The checkpoint to save is inconsistent (a tensor whose bytes do not
    /// fit its shape, a name used twice).
    #[error("checkpoint to {path}: {detail}")]
    Invalid {
        /// Where it was to be written.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint on disk is damaged, truncated or not one this version
    /// reads.
    #[error("checkpoint {path} is unreadable: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The directory holds no checkpoint.
    #[error("no checkpoint in {dir} (expected {LATEST_FILE} or step-* directories)")]
    NoCheckpoint {
        /// The directory searched.
        dir: PathBuf,
    },
    /// The new checkpoint was saved, but removing an older one failed.
    #[error("checkpoint {saved} was written, but removing the older {path} failed: {source}")]
    Prune {
        /// The checkpoint just written.
        saved: PathBuf,
        /// The one that could not be removed.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

/// The manifest file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    step: u64,
    epoch: u64,
    tensors: TensorsEntry,
    state: serde_json::Value,
}

/// The manifest's record of the tensor file.
#[derive(Debug, Serialize, Deserialize)]
struct TensorsEntry {
    file: String,
    bytes: u64,
    crc32: u32,
    /// Tensor names in the checkpoint's order (safetensors sorts its own).
    names: Vec<String>,
}

/// The checkpoint directory name for a step.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// The step a checkpoint directory name stands for.
fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn dtype_to_safetensors(dtype: ElemType) -> safetensors::Dtype {
    use safetensors::Dtype;
    match dtype {
        ElemType::F16 => Dtype::F16,
        ElemType::F32 => Dtype::F32,
        ElemType::F64 => Dtype::F64,
        ElemType::I8 => Dtype::I8,
        ElemType::I16 => Dtype::I16,
        ElemType::I32 => Dtype::I32,
        ElemType::I64 => Dtype::I64,
        ElemType::U8 => Dtype::U8,
        ElemType::U16 => Dtype::U16,
        ElemType::U32 => Dtype::U32,
        ElemType::U64 => Dtype::U64,
        ElemType::Bool => Dtype::BOOL,
    }
}

fn dtype_from_safetensors(dtype: safetensors::Dtype) -> Option<ElemType> {
    ElemType::ALL.into_iter().find(|&t| dtype_to_safetensors(t) == dtype)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_owned(), source }
}

#[cfg(test)]
thread_local! {
    /// Test hook: the file name whose write fails, as a full disk would.
    static FAIL_WRITING: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Writes a new file and syncs it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    #[cfg(test)]
    if FAIL_WRITING.get().is_some_and(|name| path.file_name().is_some_and(|n| n == name)) {
        return Err(io_err(path)(io::Error::new(io::ErrorKind::StorageFull, "no space left on device (injected)")));
    }
    let mut file = File::create_new(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Syncs a directory, so that renames inside it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Saves `checkpoint` as `dir/step-NNNNNN/`, makes it `latest`, then keeps
/// only the newest `keep_last` checkpoints (0 keeps all). Returns the new
/// checkpoint's directory. An existing checkpoint of the same step is
/// replaced. On error, earlier checkpoints and `latest` are untouched; a
/// [`CheckpointError::Prune`] means the new one was saved.
pub fn save(dir: &Path, checkpoint: &Checkpoint, keep_last: usize) -> Result<PathBuf, CheckpointError> {
    let name = step_dir_name(checkpoint.step);
    let target = dir.join(&name);
    let invalid = |detail: String| CheckpointError::Invalid { path: target.clone(), detail };

    let mut names = HashSet::new();
    let mut views = Vec::with_capacity(checkpoint.tensors.len());
    for tensor in &checkpoint.tensors {
        tensor.check().map_err(|e| invalid(e.to_string()))?;
        if !names.insert(tensor.name.as_str()) {
            return Err(invalid(format!("tensor `{}` appears twice", tensor.name)));
        }
        let view = safetensors::tensor::TensorView::new(
            dtype_to_safetensors(tensor.dtype),
            tensor.shape.clone(),
            &tensor.data,
        )
        .map_err(|e| invalid(format!("tensor `{}`: {e}", tensor.name)))?;
        views.push((tensor.name.as_str(), view));
    }
    let tensor_bytes = safetensors::serialize(views, None).map_err(|e| invalid(e.to_string()))?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        step: checkpoint.step,
        epoch: checkpoint.epoch,
        tensors: TensorsEntry {
            file: TENSORS_FILE.into(),
            bytes: tensor_bytes.len() as u64,
            crc32: crc32fast::hash(&tensor_bytes),
            names: checkpoint.tensors.iter().map(|t| t.name.clone()).collect(),
        },
        state: checkpoint.manifest.clone(),
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
    manifest_bytes.push(b'\n');

    fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Removed on drop unless renamed into place first.
    let staging = tempfile::Builder::new().prefix(TEMP_PREFIX).tempdir_in(dir).map_err(io_err(dir))?;
    write_synced(&staging.path().join(TENSORS_FILE), &tensor_bytes)?;
    write_synced(&staging.path().join(MANIFEST_FILE), &manifest_bytes)?;
    sync_dir(staging.path())?;

    // A directory cannot be renamed over a non-empty one: move an earlier
    // checkpoint of this step aside first, and back if the rename fails.
    let retired = if target.exists() {
        let aside = tempfile::Builder::new().prefix(RETIRED_PREFIX).tempdir_in(dir).map_err(io_err(dir))?.keep();
        fs::rename(&target, &aside).map_err(io_err(&target))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = fs::rename(staging.path(), &target) {
        if let Some(aside) = &retired {
            let _ = fs::rename(aside, &target);
        }
        return Err(io_err(&target)(e));
    }
    // The staging directory is gone (renamed); dropping the guard finds nothing to remove.
    drop(staging);
    sync_dir(dir)?;
    if let Some(aside) = retired {
        let _ = fs::remove_dir_all(aside);
    }

    write_latest(dir, &name)?;
    prune(dir, checkpoint.step, keep_last).map_err(|(path, source)| CheckpointError::Prune {
        saved: target.clone(),
        path,
        source,
    })?;
    Ok(target)
}

/// Points `dir/latest` at checkpoint `name`, atomically.
fn write_latest(dir: &Path, name: &str) -> Result<(), CheckpointError> {
    let latest = dir.join(LATEST_FILE);
    let mut tmp = tempfile::Builder::new().prefix(LATEST_TEMP_PREFIX).tempfile_in(dir).map_err(io_err(dir))?;
    #[cfg(test)]
    if FAIL_WRITING.get() == Some(LATEST_FILE) {
        return Err(io_err(&latest)(io::Error::new(io::ErrorKind::StorageFull, "no space left on device (injected)")));
    }
    tmp.write_all(format!("{name}\n").as_bytes()).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    tmp.persist(&latest).map_err(|e| io_err(&latest)(e.error))?;
    sync_dir(dir)
}

/// The checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Some(step) = entry.file_name().to_str().and_then(parse_step_dir) else { continue };
        if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes checkpoints older than the newest `keep_last` (never `current`),
/// and what crashed saves left behind. Each is renamed away before it is
/// deleted, so no `step-*` directory is ever half-removed.
fn prune(dir: &Path, current: u64, keep_last: usize) -> Result<(), (PathBuf, io::Error)> {
    let entries = fs::read_dir(dir).map_err(|e| (dir.to_owned(), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with(TEMP_PREFIX) || name.starts_with(RETIRED_PREFIX) {
            fs::remove_dir_all(&path).map_err(|e| (path, e))?;
        } else if name.starts_with(LATEST_TEMP_PREFIX) {
            fs::remove_file(&path).map_err(|e| (path, e))?;
        }
    }
    let all = list(dir).map_err(|e| match e {
        CheckpointError::Io { path, source } => (path, source),
        other => (dir.to_owned(), io::Error::other(other.to_string())),
    })?;
    if keep_last > 0 && all.len() > keep_last {
        for (step, path) in &all[..all.len() - keep_last] {
            if *step == current {
                continue;
            }
            let aside = dir.join(format!("{RETIRED_PREFIX}{step}"));
            fs::rename(path, &aside).map_err(|e| (path.clone(), e))?;
            fs::remove_dir_all(&aside).map_err(|e| (aside.clone(), e))?;
        }
    }
    Ok(())
}

/// The directory of the newest checkpoint in `dir`: the one `latest` names,
/// or, when `latest` is missing or names nothing (a crash between the two
/// renames), the highest step. `None` when there is none.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let pointer = dir.join(LATEST_FILE);
    match fs::read(&pointer) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let name = text.trim();
            if parse_step_dir(name).is_none() {
                return Err(CheckpointError::Corrupt {
                    path: pointer,
                    detail: format!("expected a checkpoint name like step-000100, found {:?}", truncate(name, 80)),
                });
            }
            let target = dir.join(name);
            if target.is_dir() {
                return Ok(Some(target));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&pointer)(e)),
    }
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(list(dir)?.pop().map(|(_, path)| path))
}

/// The first `max` characters of `text`.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Loads the newest checkpoint in `dir` (see [`latest`]).
pub fn load_latest(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    match latest(dir)? {
        Some(path) => load(&path),
        None => Err(CheckpointError::NoCheckpoint { dir: dir.to_owned() }),
    }
}

/// Loads the checkpoint in directory `path`, checking the tensor file's
/// length and checksum against the manifest.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let manifest_path = path.join(MANIFEST_FILE);
    let corrupt = |file: &Path, detail: String| CheckpointError::Corrupt { path: file.to_owned(), detail };
    let manifest_len = fs::metadata(&manifest_path).map_err(io_err(&manifest_path))?.len();
    if manifest_len > MAX_MANIFEST_BYTES {
        return Err(corrupt(&manifest_path, format!("{manifest_len} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")));
    }
    let manifest_bytes = fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| corrupt(&manifest_path, e.to_string()))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(corrupt(
            &manifest_path,
            format!(
                "format {:?} version {}, this build reads {FORMAT:?} version {VERSION}",
                manifest.format, manifest.version
            ),
        ));
    }
    if manifest.tensors.file != TENSORS_FILE {
        return Err(corrupt(&manifest_path, format!("unexpected tensor file name {:?}", manifest.tensors.file)));
    }

    let tensors_path = path.join(TENSORS_FILE);
    let actual_len = fs::metadata(&tensors_path).map_err(io_err(&tensors_path))?.len();
    if actual_len != manifest.tensors.bytes {
        return Err(corrupt(
            &tensors_path,
            format!("{actual_len} bytes, the manifest says {} (truncated or replaced)", manifest.tensors.bytes),
        ));
    }
    let bytes = fs::read(&tensors_path).map_err(io_err(&tensors_path))?;
    if crc32fast::hash(&bytes) != manifest.tensors.crc32 {
        return Err(corrupt(&tensors_path, "checksum mismatch: the file is damaged".into()));
    }
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(&tensors_path, e.to_string()))?;
    let mut seen = HashSet::new();
    if let Some(name) = manifest.tensors.names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(corrupt(&manifest_path, format!("tensor `{name}` is listed twice")));
    }
    if file.len() != manifest.tensors.names.len() {
        return Err(corrupt(
            &tensors_path,
            format!("{} tensors, the manifest lists {}", file.len(), manifest.tensors.names.len()),
        ));
    }
    let mut tensors = Vec::with_capacity(file.len());
    for name in &manifest.tensors.names {
        let view = file.tensor(name).map_err(|e| corrupt(&tensors_path, format!("tensor `{name}`: {e}")))?;
        let dtype = dtype_from_safetensors(view.dtype()).ok_or_else(|| {
            corrupt(&tensors_path, format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()))
        })?;
        let tensor = Array::new(name.clone(), dtype, view.shape().to_vec(), view.data().to_vec())
            .map_err(|e| corrupt(&tensors_path, e.to_string()))?;
        tensors.push(tensor);
    }
    Ok(Checkpoint { step: manifest.step, epoch: manifest.epoch, tensors, manifest: manifest.state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(step: u64) -> Checkpoint {
        // Bit patterns a lossy path would change: a NaN payload, -0, a subnormal.
        let weights = [f32::from_bits(0x7fc0_1234), -0.0, f32::from_bits(1), 1.5 + step as f32];
        Checkpoint {
            step,
            epoch: step / 3,
            tensors: vec![
                Array::from_f32("conv.weight", vec![2, 2], &weights).unwrap(),
                Array::from_f32("adamp.m.conv.weight", vec![2, 2], &[0.25; 4]).unwrap(),
                Array::from_i64("bn.num_batches_tracked", vec![], &[step as i64]).unwrap(),
                Array::new("rng.key", ElemType::U32, vec![2], vec![1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
                Array::new("mask", ElemType::Bool, vec![3], vec![1, 0, 1]).unwrap(),
                Array::new("half", ElemType::F16, vec![1], vec![0x00, 0x3c]).unwrap(),
                Array::from_f32("empty", vec![0, 4], &[]).unwrap(),
            ],
            manifest: json!({
                "config": {"optimizer": "adamp", "lr": 0.001, "schedule": {"kind": "cosine"}},
                "data_rng": u64::MAX,
                "dropout_counter": 12345678901234u64,
            }),
        }
    }

    fn injected(name: &'static str) -> impl Drop {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                FAIL_WRITING.set(None);
            }
        }
        FAIL_WRITING.set(Some(name));
        Reset
    }

    /// Every file under `dir` with its bytes, to show nothing changed.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((path.clone(), fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let ck = sample(123);
        let path = save(dir.path(), &ck, 3).unwrap();
        assert_eq!(path, dir.path().join("step-000123"));
        let back = load(&path).unwrap();
        assert_eq!(back, ck);
        // NaN compares unequal as a float; the bytes show the payload survived.
        assert_eq!(back.tensors[0].data[..4], 0x7fc0_1234u32.to_le_bytes());
        assert_eq!(back.manifest["data_rng"].as_u64(), Some(u64::MAX));
        assert_eq!(back.tensor("rng.key").map(|t| t.dtype), Some(ElemType::U32));
        assert_eq!(load_latest(dir.path()).unwrap(), ck);
        assert_eq!(fs::read_to_string(dir.path().join(LATEST_FILE)).unwrap(), "step-000123\n");
        // The tensor file is plain safetensors that other tools read.
        let bytes = fs::read(path.join(TENSORS_FILE)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("conv.weight").unwrap().dtype(), safetensors::Dtype::F32);
        let names: HashSet<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["step-000123", "latest"].into_iter().map(Into::into).collect());
    }

    #[test]
    fn keep_last_prunes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        for step in [5, 10, 15, 20, 25] {
            save(dir.path(), &sample(step), 2).unwrap();
        }
        let steps: Vec<_> = list(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, [20, 25]);
        assert_eq!(load_latest(dir.path()).unwrap().step, 25);
        // 0 keeps everything.
        let all = tempfile::tempdir().unwrap();
        for step in 1..=4 {
            save(all.path(), &sample(step), 0).unwrap();
        }
        assert_eq!(list(all.path()).unwrap().len(), 4);
        // Numeric order, not text order, past six digits.
        save(all.path(), &sample(1_000_000), 2).unwrap();
        let steps: Vec<_> = list(all.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, [4, 1_000_000]);
    }

    #[test]
    fn same_step_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &sample(7), 3).unwrap();
        let mut again = sample(7);
        again.manifest = json!({"second": true});
        save(dir.path(), &again, 3).unwrap();
        assert_eq!(load_latest(dir.path()).unwrap(), again);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// A write failing at each stage (a full disk, injected) leaves the
    /// earlier checkpoint, `latest` and everything else byte for byte.
    #[test]
    fn failed_write_leaves_earlier_checkpoints() {
        for stage in [TENSORS_FILE, MANIFEST_FILE, LATEST_FILE] {
            let dir = tempfile::tempdir().unwrap();
            let first = sample(1);
            save(dir.path(), &first, 1).unwrap();
            let before = snapshot(dir.path());
            let err = {
                let _fail = injected(stage);
                save(dir.path(), &sample(2), 1).unwrap_err()
            };
            let msg = err.to_string();
            assert!(msg.contains(stage) && msg.contains("no space left"), "{stage}: {msg}");
            assert_eq!(load_latest(dir.path()).unwrap(), first, "{stage}");
            let after = snapshot(dir.path());
            if stage == LATEST_FILE {
                // The new checkpoint is complete; `latest` still names the old one.
                let old: Vec<_> =
                    after.iter().filter(|(p, _)| !p.starts_with(dir.path().join("step-000002"))).collect();
                assert_eq!(old, before.iter().collect::<Vec<_>>());
                assert_eq!(load(&dir.path().join("step-000002")).unwrap(), sample(2));
            } else {
                assert_eq!(after, before, "{stage}");
            }
            // A later save succeeds and prunes as usual.
            save(dir.path(), &sample(3), 1).unwrap();
            assert_eq!(list(dir.path()).unwrap().len(), 1);
            assert_eq!(snapshot(dir.path()).len(), 3, "{stage}: leftovers");
        }
    }

    #[test]
    fn unwritable_destinations_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A "directory" that is a regular file: fails for root too.
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = save(&file.join("ckpt"), &sample(1), 1).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"x");

        // A read-only directory; root writes anyway, so only checked for others.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.path().join("ro");
            save(&ro, &sample(1), 1).unwrap();
            let before = snapshot(&ro);
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
            let result = save(&ro, &sample(2), 1);
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
            let err = result.unwrap_err();
            assert!(err.to_string().contains(&*ro.to_string_lossy()), "{err}");
            assert_eq!(snapshot(&ro), before);
        }
    }

    #[test]
    fn inconsistent_checkpoints_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut twice = sample(1);
        twice.tensors.push(twice.tensors[0].clone());
        let err = save(dir.path(), &twice, 1).unwrap_err();
        assert!(matches!(err, CheckpointError::Invalid { .. }) && err.to_string().contains("conv.weight"), "{err}");
        let mut short = sample(1);
        short.tensors[1].data.pop();
        assert!(matches!(save(dir.path(), &short, 1), Err(CheckpointError::Invalid { .. })));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn damaged_checkpoints_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = save(dir.path(), &sample(4), 1).unwrap();
        let tensors = path.join(TENSORS_FILE);
        let manifest = path.join(MANIFEST_FILE);
        let good_tensors = fs::read(&tensors).unwrap();
        let good_manifest = fs::read(&manifest).unwrap();
        let expect = |needle: &str, file: &Path| {
            let err = load_latest(dir.path()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(needle) && msg.contains(&*file.to_string_lossy()), "{needle}: {msg}");
        };

        fs::write(&tensors, &good_tensors[..good_tensors.len() - 3]).unwrap();
        expect("truncated", &tensors);
        let mut flipped = good_tensors.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x10;
        fs::write(&tensors, &flipped).unwrap();
        expect("checksum", &tensors);
        fs::write(&tensors, &good_tensors).unwrap();

        fs::write(&manifest, b"{ not json").unwrap();
        expect("manifest.json", &manifest);
        let mut other: serde_json::Value = serde_json::from_slice(&good_manifest).unwrap();
        other["version"] = json!(99);
        fs::write(&manifest, serde_json::to_vec(&other).unwrap()).unwrap();
        expect("version 99", &manifest);
        fs::remove_file(&manifest).unwrap();
        expect("manifest.json", &manifest);
        fs::write(&manifest, &good_manifest).unwrap();
        assert_eq!(load_latest(dir.path()).unwrap(), sample(4));

        // A garbage pointer is an error; a pointer to nothing falls back to the newest step.
        let pointer = dir.path().join(LATEST_FILE);
        fs::write(&pointer, b"../../etc").unwrap();
        expect("step-000100", &pointer);
        fs::write(&pointer, b"step-000999\n").unwrap();
        assert_eq!(load_latest(dir.path()).unwrap().step, 4);
        fs::remove_file(&pointer).unwrap();
        assert_eq!(load_latest(dir.path()).unwrap().step, 4);

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(load_latest(empty.path()), Err(CheckpointError::NoCheckpoint { .. })));
        assert!(matches!(load_latest(&empty.path().join("missing")), Err(CheckpointError::NoCheckpoint { .. })));
    }

    /// A damaged tensor file whose manifest checksum was updated to match (so
    /// the safetensors parser itself sees the damage): errors, never panics.
    #[test]
    fn damaged_tensor_files_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = save(dir.path(), &sample(9), 1).unwrap();
        let good = fs::read(path.join(TENSORS_FILE)).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(path.join(MANIFEST_FILE)).unwrap()).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut errors = 0;
        for round in 0..300 {
            let mut bytes = good.clone();
            if round % 3 == 0 {
                bytes.truncate((state % good.len() as u64) as usize);
            }
            for _ in 0..1 + round % 4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if !bytes.is_empty() {
                    let at = (state % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (state % 8);
                }
            }
            manifest["tensors"]["bytes"] = json!(bytes.len());
            manifest["tensors"]["crc32"] = json!(crc32fast::hash(&bytes));
            fs::write(path.join(TENSORS_FILE), &bytes).unwrap();
            fs::write(path.join(MANIFEST_FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
            match load(&path) {
                Ok(ck) => ck.tensors.iter().for_each(|t| t.check().unwrap()),
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 100, "{errors}");
    }
}
