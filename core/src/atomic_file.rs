//! Writing a file so that readers only ever see the old contents or the complete new ones.
//!
//! Models, sessions and saved logits are written to a uniquely named temporary file in the
//! destination's directory (so two writers of the same path, or of `chat.a` and `chat.b`,
//! never share one), flushed to disk, and renamed over the destination, which is atomic on
//! POSIX file systems. On any error the temporary file is removed and the destination is left
//! as it was. A process stopped by a signal can remove what it was writing with
//! [`remove_unfinished`] (the CLI does on Ctrl-C and SIGTERM); one killed outright (SIGKILL)
//! leaves at worst a stray `.NAME.*.partial` file, never a truncated destination.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The temporary files being written now, for [`remove_unfinished`].
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes every temporary file still being written (their destinations are untouched). For a
/// signal handler's thread, right before the process exits; writes in progress then fail.
pub fn remove_unfinished() {
    let list = UNFINISHED.lock().unwrap_or_else(|p| p.into_inner());
    for tmp in list.iter() {
        let _ = std::fs::remove_file(tmp);
    }
}

/// An entry of [`UNFINISHED`], removed from it on drop.
struct Registered(PathBuf);

impl Registered {
    fn new(tmp: &Path) -> Self {
        UNFINISHED.lock().unwrap_or_else(|p| p.into_inner()).push(tmp.to_path_buf());
        Registered(tmp.to_path_buf())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut list = UNFINISHED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = list.iter().position(|p| *p == self.0) {
            list.swap_remove(i);
        }
    }
}

/// A file being written under a temporary name; [`AtomicFile::commit`] puts it in place.
/// Dropped without a commit (an error, a panic), it is removed and the destination is untouched.
pub struct AtomicFile {
    path: PathBuf,
    w: BufWriter<tempfile::NamedTempFile>,
    registered: Registered,
}

impl AtomicFile {
    /// Starts writing `path`: nothing at `path` changes until [`AtomicFile::commit`].
    pub fn create(path: &Path) -> Result<AtomicFile> {
        if path.is_dir() {
            return Err(Error::io(path, std::io::Error::other("is a directory, not a file name")));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = parent_dir(path);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let registered = Registered::new(tmp.path());
        Ok(AtomicFile { path: path.to_path_buf(), w: BufWriter::with_capacity(1 << 20, tmp), registered })
    }

    /// Where the contents go: errors name the destination.
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.w
    }

    /// Flushes the contents to disk and renames the file over the destination.
    pub fn commit(self) -> Result<()> {
        let AtomicFile { path, w, registered } = self;
        let tmp = w.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
        // The temporary file is created 0600; a model or session file is not a secret, and
        // another user (a server account) must be able to read it: keep the mode of the file
        // it replaces, else rw-r--r-- as a plain create under the usual umask gives.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&path, e))?;
        }
        tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        // Only now: a signal before the rename must still find the file to remove.
        drop(registered);
        // The rename itself is durable once the directory is synced (Linux; elsewhere best effort).
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(parent_dir(&path)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `path` atomically: `fill` writes the whole contents into the given writer.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    fill(f.writer())?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        let e = write_atomic(&p, |w: &mut dyn Write| {
            w.write_all(b"half").unwrap();
            Err(Error::InvalidArgument("stop".into()))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old", "a failed write leaves the old file");
        write_atomic(&p, |w| w.write_all(b"new").map_err(|e| Error::io("x", e))).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        let e = write_atomic(dir.path(), |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    /// A new file is readable by others (rw-r--r--), not the temporary file's 0600; a replaced
    /// file keeps its mode.
    #[cfg(unix)]
    #[test]
    fn new_files_are_0644_and_replaced_files_keep_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.gguf");
        write_atomic(&p, |w| w.write_all(b"a").map_err(|e| Error::io("x", e))).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, |w| w.write_all(b"b").map_err(|e| Error::io("x", e))).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
