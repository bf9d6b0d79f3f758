//! Per-key advisory locks, so that one node is computed by one process at a time.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::{Digest, Store, StoreError};

/// An exclusive advisory lock on a key, held until dropped (or until the process dies).
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
    path: PathBuf,
}

impl KeyLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store {
    /// Takes an exclusive advisory lock (flock on `locks/<hex>.lock`) for a key; blocks until
    /// free; released on drop and by the OS if the process dies.
    pub fn lock_key(&self, key: &Digest) -> Result<KeyLock, StoreError> {
        let (file, path) = self.open_lock_file(key)?;
        loop {
            match FileExt::lock_exclusive(&file) {
                Ok(()) => return Ok(KeyLock { _file: file, path }),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(path, e)),
            }
        }
    }

    /// Takes the lock for a key if it is free now; `None` when another holder has it.
    pub fn try_lock_key(&self, key: &Digest) -> Result<Option<KeyLock>, StoreError> {
        let (file, path) = self.open_lock_file(key)?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(Some(KeyLock { _file: file, path })),
            Ok(false) => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// The lock file for a key (whether or not it exists).
    pub fn lock_path(&self, key: &Digest) -> PathBuf {
        self.root()
            .join("locks")
            .join(format!("{}.lock", key.hex()))
    }

    fn open_lock_file(&self, key: &Digest) -> Result<(File, PathBuf), StoreError> {
        let path = self.lock_path(key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok((file, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other_locker_gets_it(path: &Path) -> bool {
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            FileExt::try_lock_exclusive(&f).unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn lock_excludes_a_second_locker_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Digest::of(b"node");
        let lock = store.lock_key(&key).unwrap();
        assert_eq!(lock.path(), store.lock_path(&key));
        assert!(!other_locker_gets_it(lock.path()));
        assert!(store.try_lock_key(&key).unwrap().is_none());
        let other = store.try_lock_key(&Digest::of(b"other node")).unwrap();
        assert!(other.is_some());
        drop(lock);
        assert!(other_locker_gets_it(&store.lock_path(&key)));
        assert!(store.try_lock_key(&key).unwrap().is_some());
    }
}
