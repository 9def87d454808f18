//! Writing outputs: never onto an input, never onto anything but a regular
//! file, always atomically, and without leaving files behind when killed.
use super::OnnxError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Refuses an output path that is one of `inputs` (the same file, also through
/// a hard link or a symlink) or that exists as something other than a regular
/// file (a directory, FIFO, socket or device, which a rename would replace).
/// Commands call it before any work, and [`write_atomic`] checks the type again.
pub fn check_output(output: &Path, inputs: &[PathBuf]) -> Result<(), OnnxError> {
    let refuse = |reason: String| OnnxError::OutputRefused { path: output.to_path_buf(), reason };
    let Ok(out_meta) = std::fs::metadata(output) else {
        // Absent (or a dangling symlink, which the rename replaces): nothing to protect.
        return Ok(());
    };
    if !out_meta.is_file() {
        return Err(refuse(format!("it exists and is {}, not a regular file", kind_of(&out_meta))));
    }
    for input in inputs {
        let Ok(in_meta) = std::fs::metadata(input) else { continue };
        if same_file(&out_meta, &in_meta, output, input) {
            return Err(refuse(format!("it would overwrite the input '{}'; choose another output path", input.display())));
        }
    }
    Ok(())
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Writes `bytes` to `path` atomically: the data goes to a new file beside it,
/// created exclusively under a random name, which is then renamed over `path`.
/// A planted symlink at the temporary name is never followed (the name is
/// unpredictable and creation refuses existing names). On Linux the data is
/// first written to an unnamed file (`O_TMPFILE`) and only linked under a
/// temporary name once complete, so a kill while writing leaves nothing behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OnnxError> {
    check_output(path, &[])?;
    let err = |source| OnnxError::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{file_name}.");
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // What `File::create` would give under the usual umask, not tempfile's 0600.
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    #[cfg(target_os = "linux")]
    if let Some(file) = unnamed::write(&dir, bytes).map_err(err)? {
        // Without /proc the link fails; the named way below still works.
        if let Ok(named) = builder.make_in(&dir, |tmp| unnamed::link(&file, tmp)) {
            return named.persist(path).map(drop).map_err(|e| err(e.error));
        }
    }
    let mut named = builder.tempfile_in(&dir).map_err(err)?;
    named.write_all(bytes).map_err(err)?;
    named.as_file().sync_all().map_err(err)?;
    named.persist(path).map(drop).map_err(|e| err(e.error))
}

#[cfg(target_os = "linux")]
mod unnamed {
    use std::io::Write;
    use std::path::Path;

    /// The data in a complete, synced file without a name in `dir`; `None`
    /// where the file system has no `O_TMPFILE` (the caller falls back).
    pub(super) fn write(dir: &Path, bytes: &[u8]) -> std::io::Result<Option<std::fs::File>> {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o644).open(dir);
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => return Ok(None),
            Err(e) => return Err(e),
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(Some(file))
    }

    /// Gives the unnamed file a name; fails with `AlreadyExists` where the name
    /// exists (even as a dangling symlink), so tempfile picks another.
    pub(super) fn link(file: &std::fs::File, name: &Path) -> std::io::Result<()> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::io::AsRawFd;
        let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(std::io::Error::other)?;
        let target = CString::new(name.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: both paths are valid NUL-terminated strings for the call's duration.
        let rc = unsafe { libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_bytes_have_no_name_until_they_are_complete() {
        let dir = tempfile::tempdir().unwrap();
        // Written and synced, yet nothing in the folder: a kill now leaves nothing.
        let file = unnamed::write(dir.path(), b"complete").unwrap().expect("O_TMPFILE on this file system");
        assert!(names_in(dir.path()).is_empty());
        let name = dir.path().join("linked");
        unnamed::link(&file, &name).unwrap();
        assert_eq!(std::fs::read(&name).unwrap(), b"complete");
        // An existing name is never overwritten or followed.
        let err = unnamed::link(&file, &name).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_only_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        write_atomic(&out, b"one").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(names_in(dir.path()), ["out.bin"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777 & !0o022, 0o644 & !0o022);
        }
    }
}
