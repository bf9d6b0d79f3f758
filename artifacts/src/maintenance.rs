//! Store maintenance: removing and quarantining entries (for `verify --repair` and `gc`), and the
//! store-wide use lock that keeps `gc` away from running processes.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;

use fs4::fs_std::FileExt;

use crate::{Digest, Store, StoreError};

/// A lock on the whole store: shared by every process that uses it, exclusive for `gc`.
#[derive(Debug)]
pub struct UseLock {
    _file: File,
}

impl Store {
    fn use_lock_file(&self) -> Result<File, StoreError> {
        let path = self.root().join("locks").join("store.lock");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Marks this process as using the store (a shared lock, released on drop or death).
    pub fn lock_use(&self) -> Result<UseLock, StoreError> {
        let file = self.use_lock_file()?;
        loop {
            match FileExt::lock_shared(&file) {
                Ok(()) => return Ok(UseLock { _file: file }),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(self.root(), e)),
            }
        }
    }

    /// Takes the store for exclusive maintenance if no other process uses it now.
    pub fn try_lock_exclusive_use(&self) -> Result<Option<UseLock>, StoreError> {
        let file = self.use_lock_file()?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(Some(UseLock { _file: file })),
            Ok(false) => Ok(None),
            Err(e) => Err(StoreError::io(self.root(), e)),
        }
    }

    /// Size of a blob in bytes (0 when absent).
    pub fn blob_size(&self, d: &Digest) -> u64 {
        fs::metadata(self.blob_path(d))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Deletes a blob (absent is fine).
    pub fn remove_blob(&self, d: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Moves a blob to `quarantine/<hex>`, out of the way of every reader, for inspection.
    pub fn quarantine_blob(&self, d: &Digest) -> Result<(), StoreError> {
        let dir = self.root().join("quarantine");
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let from = self.blob_path(d);
        fs::rename(&from, dir.join(d.hex())).map_err(|e| StoreError::io(from, e))
    }

    /// Deletes the manifest of a key (absent is fine), so the node is computed again.
    pub fn remove_manifest(&self, key: &Digest) -> Result<(), StoreError> {
        let path = self.manifest_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_use_is_refused_while_another_uses_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let user = store.lock_use().unwrap();
        assert!(store.try_lock_exclusive_use().unwrap().is_none());
        drop(user);
        assert!(store.try_lock_exclusive_use().unwrap().is_some());
    }

    #[test]
    fn quarantine_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_bytes(b"x").unwrap();
        assert_eq!(store.blob_size(&d), 1);
        store.quarantine_blob(&d).unwrap();
        assert!(!store.has_blob(&d));
        assert!(dir.path().join("quarantine").join(d.hex()).exists());
        let e = store.put_bytes(b"y").unwrap();
        store.remove_blob(&e).unwrap();
        store.remove_blob(&e).unwrap();
        assert!(!store.has_blob(&e));
    }
}
