//! The data directory: where the database, the admin socket and the server's lock live.
//!
//! One server per data directory: the server holds an exclusive advisory lock on
//! `<dir>/keygate.lock` for as long as it runs. The CLI uses the same lock to decide whether to
//! talk to a running server (lock held) or to open the store itself (lock free, and then held by
//! the CLI for the duration of the command, so a server cannot start underneath it).

use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// A data directory path and the files keygate keeps in it.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("data directory {dir} is in use by {holder}")]
    Held {
        /// The directory.
        dir: String,
        /// What the lock file says about its holder, e.g. `keygate serve (pid 4242)`.
        holder: String,
    },
    /// The lock file could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An exclusive hold on a data directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDir {
    /// The directory at `path` (not created yet).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory itself.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory (mode 0700) if missing, and refuses one that other local users may
    /// enter: it holds the password hashes, the audit log and the encrypted secrets, and what a
    /// process creates inside it later (SQLite's `-wal` and `-shm`, sockets) must not depend on
    /// each file's mode being right.
    ///
    /// # Errors
    /// [`StoreError::Setup`] naming the directory, and for a directory open to others its mode
    /// and the command that fixes it.
    pub fn ensure(&self) -> Result<(), StoreError> {
        if let Ok(meta) = std::fs::metadata(&self.path)
            && meta.is_dir()
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Setup(format!(
                    "data directory {dir} is open to other users (mode {mode:04o}); it holds password hashes and \
                     the audit log, so keygate needs it private: run `chmod 700 {dir}` or choose another --data-dir",
                    dir = self.path.display()
                )));
            }
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| StoreError::Setup(format!("cannot create data directory {}: {e}", self.path.display())))
    }

    /// The SQLite database file.
    #[must_use]
    pub fn database(&self) -> PathBuf {
        self.path.join("keygate.db")
    }

    /// The admin channel's Unix socket.
    #[must_use]
    pub fn admin_socket(&self) -> PathBuf {
        self.path.join("admin.sock")
    }

    fn lock_file(&self) -> PathBuf {
        self.path.join("keygate.lock")
    }

    /// Takes the directory's exclusive lock without waiting, recording `holder` in the lock file.
    ///
    /// # Errors
    /// [`LockError::Held`] when another process has it, naming that process.
    pub fn try_lock(&self, holder: &str) -> Result<DataDirLock, LockError> {
        self.ensure()?;
        let path = self.lock_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Setup(format!("cannot open lock file {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder =
                    if text.trim().is_empty() { "another keygate process".to_owned() } else { text.trim().to_owned() };
                return Err(LockError::Held { dir: self.path.display().to_string(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Setup(format!("cannot lock {}: {e}", path.display())).into());
            }
        }
        // We hold the lock: record who we are for the next process's message.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = writeln!(file, "{holder} (pid {})", std::process::id());
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_open_to_other_users_is_refused_with_the_fix_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = DataDir::new(&path).try_lock("keygate serve").unwrap_err().to_string();
        assert!(err.contains("mode 0755") && err.contains("chmod 700"), "{err}");
        assert!(!path.join("keygate.lock").exists(), "nothing is created in a refused directory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(DataDir::new(&path).try_lock("keygate serve").is_ok());
        let fresh = DataDir::new(tmp.path().join("new"));
        fresh.ensure().unwrap();
        assert_eq!(std::fs::metadata(fresh.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holder_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let first = dir.try_lock("keygate serve").unwrap();
        let err = dir.try_lock("keygate serve").unwrap_err().to_string();
        assert!(err.contains("in use by keygate serve (pid"), "{err}");
        drop(first);
        assert!(dir.try_lock("keygate keys").is_ok());
    }
}
