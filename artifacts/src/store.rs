//! The local content-addressed store: immutable blobs named by digest, the action cache of
//! manifests, and small mutable JSON files such as experiment references.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Digest, Manifest, StoreError};

/// Distinguishes temp files made by one process, across all stores it opens.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Bytes read at a time when a file is copied into the store.
const COPY_CHUNK: usize = 1 << 20;

/// Bytes a [`BlobWriter`] gathers before hashing and writing them.
const WRITE_BUFFER: usize = 256 << 10;

/// A local content-addressed store rooted at a directory (default `.uinfo/`).
///
/// Layout: `blobs/<2 hex>/<64 hex>`, `ac/<2 hex>/<64 hex>.json`, `tmp/`, `locks/`,
/// `experiments/`. Safe to share across threads and across processes on one filesystem.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    verified: Mutex<HashSet<Digest>>,
}

impl Store {
    /// Opens (creating if needed) the store; checks it is writable by creating and removing a
    /// probe file in `tmp/`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let root = std::path::absolute(root).map_err(|source| StoreError::Unwritable {
            path: root.to_path_buf(),
            source,
        })?;
        let store = Store::at(root);
        for dir in ["", "blobs", "ac", "tmp", "locks", "experiments"] {
            let path = store.root.join(dir);
            fs::create_dir_all(&path).map_err(|source| StoreError::Unwritable { path, source })?;
        }
        let probe = store.temp_path("probe");
        let unwritable = |source| StoreError::Unwritable {
            path: probe.clone(),
            source,
        };
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"probe"))
            .map_err(unwritable)?;
        fs::remove_file(&probe).map_err(unwritable)?;
        Ok(store)
    }

    /// Opens an existing store read-only for inspection (no writability check, does not create
    /// dirs; error if root is missing or not a directory).
    pub fn open_existing(root: &Path) -> Result<Store, StoreError> {
        let root = std::path::absolute(root).map_err(|e| StoreError::io(root, e))?;
        let meta = fs::metadata(&root).map_err(|e| StoreError::io(&root, e))?;
        if !meta.is_dir() {
            let e = io::Error::new(ErrorKind::NotADirectory, "not a directory");
            return Err(StoreError::io(&root, e));
        }
        Ok(Store::at(root))
    }

    fn at(root: PathBuf) -> Store {
        Store {
            root,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// The store's root directory, made absolute.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `d` lies (whether or not present).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_path_in(&self.root, d)
    }

    /// Where the manifest stored under `key` lies (whether or not present).
    pub fn manifest_path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.root
            .join("ac")
            .join(&hex[..2])
            .join(format!("{hex}.json"))
    }

    /// True when a blob named `d` is present (its content is not checked).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Stores bytes if absent and returns their digest: written to a temp file in `tmp/`,
    /// fsynced, made read-only (0444), renamed into place, and the fan-out directory fsynced.
    /// If the blob already exists, nothing is written.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let temp = self.write_temp("blob", bytes, true)?;
        place(temp, &self.blob_path(&d))?;
        Ok(d)
    }

    /// Stores a copy of the file at `src` if absent and returns its digest. The file is read
    /// once, in chunks, hashed as it is copied (memory does not grow with its size); the digest
    /// is that of the copy, so a file that changes while being copied is never stored under a
    /// wrong name.
    pub fn put_file(&self, src: &Path) -> Result<Digest, StoreError> {
        let mut file = File::open(src).map_err(|e| StoreError::io(src, e))?;
        let mut writer = self.blob_writer()?;
        let mut chunk = vec![0u8; COPY_CHUNK];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(src, e)),
            };
            writer
                .write_all(&chunk[..n])
                .map_err(|e| StoreError::io(writer.path(), e))?;
        }
        writer.finish()
    }

    /// A writer for a new blob of any size, hashed as it is written to a temp file in `tmp/`;
    /// [`BlobWriter::finish`] stores it under its digest.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let temp = TempFile::new(self.temp_path("blob"));
        let file = create_temp(&temp.path)?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(
                WRITE_BUFFER,
                Hashing {
                    file,
                    hasher: blake3::Hasher::new(),
                },
            ),
            temp,
            root: self.root.clone(),
        })
    }

    /// Reads a blob, checking its digest the first time this `Store` reads it; `Corrupt` on a
    /// mismatch, `Missing` when absent.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(d);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::Missing { digest: *d, path })
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let verified = || self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if !verified().contains(d) {
            // Hash outside the lock, so worker threads reading different blobs do not queue.
            if Digest::of(&bytes) != *d {
                return Err(StoreError::Corrupt { digest: *d, path });
            }
            verified().insert(*d);
        }
        Ok(bytes)
    }

    /// Re-hashes a blob from disk whatever was checked before; `Corrupt` on a mismatch,
    /// `Missing` when absent.
    pub fn verify_blob(&self, d: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        let actual = match Digest::of_file(&path) {
            Ok(a) => a,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::Missing { digest: *d, path })
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if actual == *d {
            verified.insert(*d);
            Ok(())
        } else {
            verified.remove(d);
            Err(StoreError::Corrupt { digest: *d, path })
        }
    }

    /// Returns the manifest stored under `key`, or `None` when absent; `BadManifest` when it
    /// does not parse or names another key.
    pub fn get_manifest(&self, key: &Digest) -> Result<Option<Manifest>, StoreError> {
        let path = self.manifest_path(key);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| StoreError::BadManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if m.key != *key {
            return Err(StoreError::BadManifest {
                path,
                message: format!("it names key {} but is stored under {}", m.key, key),
            });
        }
        Ok(Some(m))
    }

    /// True when the manifest exists and every output blob it names is present.
    pub fn is_complete(&self, m: &Manifest) -> bool {
        self.manifest_path(&m.key).is_file() && m.outputs.values().all(|d| self.has_blob(d))
    }

    /// Writes the manifest atomically (temp, fsync, then linked into place without replacing)
    /// unless one already exists for its key, which is kept. Returns true if written.
    pub fn put_manifest(&self, m: &Manifest) -> Result<bool, StoreError> {
        let path = self.manifest_path(&m.key);
        if path.exists() {
            return Ok(false);
        }
        let json = serde_json::to_vec_pretty(m).map_err(|e| StoreError::BadManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let temp = self.write_temp("manifest", &json, true)?;
        let dir = parent_of(&path);
        ensure_dir(dir)?;
        match fs::hard_link(&temp.path, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            // Filesystems without hard links: a rename, which could replace a manifest written
            // by another process in the meantime with an equivalent one.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Unsupported | ErrorKind::PermissionDenied
                ) =>
            {
                if path.exists() {
                    return Ok(false);
                }
                return place(temp, &path).map(|()| true);
            }
            Err(e) => return Err(StoreError::io(path, e)),
        }
        sync_dir(dir)?;
        Ok(true)
    }

    /// Keys of all manifests in the action cache, sorted.
    pub fn manifest_keys(&self) -> Result<Vec<Digest>, StoreError> {
        self.list_fanout("ac", ".json")
    }

    /// Atomically writes (temp, fsync, rename) a small JSON file at a path relative to the root
    /// (e.g. "experiments/checkerboard.json"), replacing any old one.
    pub fn write_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<(), StoreError> {
        let path = self.resolve(rel)?;
        let json = serde_json::to_vec_pretty(value).map_err(|e| StoreError::BadJson {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let temp = self.write_temp("json", &json, false)?;
        ensure_dir(parent_of(&path))?;
        place(temp, &path)
    }

    /// Reads a JSON file written by [`Store::write_json`]; `None` if absent, `BadJson` if it
    /// does not parse as `T`.
    pub fn read_json<T: DeserializeOwned>(&self, rel: &str) -> Result<Option<T>, StoreError> {
        let path = self.resolve(rel)?;
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::BadJson {
                path,
                message: e.to_string(),
            })
    }

    /// All blob digests present, sorted (files in `blobs/` whose names are not digests are
    /// skipped).
    pub fn blobs(&self) -> Result<Vec<Digest>, StoreError> {
        self.list_fanout("blobs", "")
    }

    pub(crate) fn list_fanout(&self, top: &str, suffix: &str) -> Result<Vec<Digest>, StoreError> {
        let top = self.root.join(top);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&top) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io(top, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&top, e))?;
            let fan = entry.file_name();
            let Some(fan) = fan.to_str().filter(|f| f.len() == 2) else {
                continue;
            };
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
                let file = file.map_err(|e| StoreError::io(&dir, e))?;
                let name = file.file_name();
                let digest = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(suffix))
                    .filter(|n| n.starts_with(fan))
                    .and_then(|n| n.parse::<Digest>().ok());
                if let Some(d) = digest {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A path relative to the root, refusing absolute paths and `..`.
    fn resolve(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let p = Path::new(rel);
        let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            let e = io::Error::new(
                ErrorKind::InvalidInput,
                "expected a relative path inside the store, without `..`",
            );
            return Err(StoreError::io(p, e));
        }
        Ok(self.root.join(p))
    }

    fn temp_path(&self, purpose: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{n}.{purpose}", std::process::id()))
    }

    /// Writes bytes to a new temp file in `tmp/`, fsynced and, if asked, read-only.
    fn write_temp(
        &self,
        purpose: &str,
        bytes: &[u8],
        read_only: bool,
    ) -> Result<TempFile, StoreError> {
        let temp = TempFile::new(self.temp_path(purpose));
        let mut file = create_temp(&temp.path)?;
        file.write_all(bytes)
            .map_err(|e| StoreError::io(&temp.path, e))?;
        drop(file);
        finish_temp(&temp.path, read_only)?;
        Ok(temp)
    }
}

/// A new blob being written: hashed as it is written, through a buffer, to a temp file in the
/// store's `tmp/`. Dropped before [`BlobWriter::finish`], it leaves nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    out: BufWriter<Hashing>,
    temp: TempFile,
    root: PathBuf,
}

/// A temp file and the hash of what was written to it.
#[derive(Debug)]
struct Hashing {
    file: File,
    hasher: blake3::Hasher,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// The temp file being written, for error messages.
    pub fn path(&self) -> &Path {
        &self.temp.path
    }

    /// The digest of everything written so far.
    pub fn digest(&mut self) -> Result<Digest, StoreError> {
        self.out
            .flush()
            .map_err(|e| StoreError::io(&self.temp.path, e))?;
        Ok(Digest(*self.out.get_ref().hasher.finalize().as_bytes()))
    }

    /// Stores the blob unless the store has it already: the temp file is fsynced, made
    /// read-only (0444), renamed into place and the fan-out directory fsynced. Returns its
    /// digest.
    pub fn finish(mut self) -> Result<Digest, StoreError> {
        let d = self.digest()?;
        let Hashing { file, .. } = self
            .out
            .into_inner()
            .map_err(|e| StoreError::io(&self.temp.path, e.into_error()))?;
        drop(file);
        let dest = blob_path_in(&self.root, &d);
        if dest.is_file() {
            return Ok(d);
        }
        finish_temp(&self.temp.path, true)?;
        place(self.temp, &dest)?;
        Ok(d)
    }
}

fn blob_path_in(root: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    root.join("blobs").join(&hex[..2]).join(hex)
}

/// Creates a new temp file for writing (and `tmp/` if it was removed).
fn create_temp(path: &Path) -> Result<File, StoreError> {
    let tmp_dir = parent_of(path);
    if !tmp_dir.is_dir() {
        fs::create_dir_all(tmp_dir).map_err(|source| StoreError::Unwritable {
            path: tmp_dir.to_path_buf(),
            source,
        })?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|source| StoreError::Unwritable {
            path: path.to_path_buf(),
            source,
        })
}

/// Renames a finished temp file to `dest` and makes the rename durable.
fn place(mut temp: TempFile, dest: &Path) -> Result<(), StoreError> {
    let dir = parent_of(dest);
    ensure_dir(dir)?;
    fs::rename(&temp.path, dest).map_err(|e| StoreError::io(dest, e))?;
    temp.placed = true;
    sync_dir(dir)
}

/// Creates `dir` (and parents) if missing, making the new entry durable.
fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    sync_dir(parent_of(dir))
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Sets permissions and fsyncs a temp file whose content is written.
fn finish_temp(path: &Path, read_only: bool) -> Result<(), StoreError> {
    if read_only {
        #[cfg(unix)]
        let perms = {
            use std::os::unix::fs::PermissionsExt;
            fs::Permissions::from_mode(0o444)
        };
        #[cfg(not(unix))]
        let perms = {
            let mut p = fs::metadata(path)
                .map_err(|e| StoreError::io(path, e))?
                .permissions();
            p.set_readonly(true);
            p
        };
        fs::set_permissions(path, perms).map_err(|e| StoreError::io(path, e))?;
    }
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

/// Fsyncs a directory so that entries renamed or created in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A temp file removed on drop unless it was renamed into place.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    placed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile {
            path,
            placed: false,
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Provenance;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::time::SystemTime;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(".uinfo")).unwrap();
        (dir, store)
    }

    fn manifest(key: Digest, outputs: &[(&str, Digest)], node: &str) -> Manifest {
        Manifest {
            key,
            stage: "train".into(),
            stage_version: 1,
            params: serde_json::json!({"lr": 0.1}),
            inputs: BTreeMap::new(),
            outputs: outputs.iter().map(|(n, d)| (n.to_string(), *d)).collect(),
            sizes: BTreeMap::new(),
            provenance: Provenance::now_for(node, "cpu-f32", SystemTime::now(), "0.1.0"),
        }
    }

    fn tmp_is_empty(store: &Store) -> bool {
        fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
        check::<crate::KeyLock>();
    }

    #[test]
    fn open_creates_layout() {
        let (_dir, store) = store();
        for d in ["blobs", "ac", "tmp", "locks", "experiments"] {
            assert!(store.root().join(d).is_dir(), "{d}");
        }
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn put_read_round_trip() {
        let (_dir, store) = store();
        let d = store.put_bytes(b"some bytes").unwrap();
        assert_eq!(d, Digest::of(b"some bytes"));
        let hex = d.hex();
        assert!(store
            .blob_path(&d)
            .ends_with(format!("blobs/{}/{hex}", &hex[..2])));
        assert!(store.has_blob(&d));
        assert_eq!(store.read_blob(&d).unwrap(), b"some bytes");
        assert_eq!(store.read_blob(&d).unwrap(), b"some bytes");
        assert_eq!(store.blobs().unwrap(), vec![d]);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn put_twice_writes_once_and_blob_is_read_only() {
        let (_dir, store) = store();
        let d = store.put_bytes(b"once").unwrap();
        let meta = fs::metadata(store.blob_path(&d)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
        assert_eq!(store.put_bytes(b"once").unwrap(), d);
        let again = fs::metadata(store.blob_path(&d)).unwrap();
        assert_eq!(again.ino(), meta.ino(), "blob was replaced");
        assert_eq!(store.blobs().unwrap().len(), 1);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn put_file_stores_a_copy() {
        let (dir, store) = store();
        let src = dir.path().join("src.bin");
        fs::write(&src, b"file content").unwrap();
        let d = store.put_file(&src).unwrap();
        assert_eq!(d, Digest::of(b"file content"));
        assert_eq!(store.read_blob(&d).unwrap(), b"file content");
        assert_eq!(store.put_file(&src).unwrap(), d);
        assert!(src.exists());
        assert!(tmp_is_empty(&store));
        let e = store.put_file(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
    }

    fn flip_first_byte(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(path).unwrap();
        bytes[0] ^= 1;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn flipped_byte_is_corrupt() {
        let (_dir, store) = store();
        let d = store.put_bytes(b"precious").unwrap();
        let path = store.blob_path(&d);
        flip_first_byte(&path);
        let e = store.read_blob(&d).unwrap_err();
        assert!(
            matches!(e, StoreError::Corrupt { digest, .. } if digest == d),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&d.short()) && msg.contains(&*path.to_string_lossy()),
            "{msg}"
        );
        assert!(msg.contains("corrupt"), "{msg}");
        // Not remembered as verified: a second read fails too.
        assert!(matches!(
            store.read_blob(&d),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.verify_blob(&d),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn verify_blob_rehashes_after_a_verified_read() {
        let (_dir, store) = store();
        let d = store.put_bytes(b"later damaged").unwrap();
        store.read_blob(&d).unwrap();
        flip_first_byte(&store.blob_path(&d));
        assert!(matches!(
            store.verify_blob(&d),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.read_blob(&d),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn missing_blob_is_missing() {
        let (_dir, store) = store();
        let d = Digest::of(b"never stored");
        assert!(!store.has_blob(&d));
        let e = store.read_blob(&d).unwrap_err();
        assert!(
            matches!(e, StoreError::Missing { digest, .. } if digest == d),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .contains(&*store.blob_path(&d).to_string_lossy()));
        assert!(matches!(
            store.verify_blob(&d),
            Err(StoreError::Missing { .. })
        ));
    }

    #[test]
    fn manifest_is_created_once_and_first_is_kept() {
        let (_dir, store) = store();
        let key = Digest::of(b"key");
        assert_eq!(store.get_manifest(&key).unwrap(), None);
        let out = store.put_bytes(b"out").unwrap();
        let first = manifest(key, &[("model.bin", out)], "first");
        let second = manifest(key, &[("model.bin", out)], "second");
        assert!(store.put_manifest(&first).unwrap());
        assert!(!store.put_manifest(&second).unwrap());
        let got = store.get_manifest(&key).unwrap().unwrap();
        assert_eq!(got, first);
        assert_eq!(got.provenance.node, "first");
        assert_eq!(store.manifest_keys().unwrap(), vec![key]);
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn incomplete_when_an_output_blob_is_deleted() {
        let (_dir, store) = store();
        let a = store.put_bytes(b"a").unwrap();
        let b = store.put_bytes(b"b").unwrap();
        let m = manifest(Digest::of(b"k"), &[("a", a), ("b", b)], "n");
        assert!(
            !store.is_complete(&m),
            "complete before the manifest is written"
        );
        store.put_manifest(&m).unwrap();
        assert!(store.is_complete(&m));
        fs::remove_file(store.blob_path(&b)).unwrap();
        assert!(!store.is_complete(&m));
    }

    #[test]
    fn bad_manifests_are_reported_with_their_path() {
        let (_dir, store) = store();
        let key = Digest::of(b"garbled");
        let path = store.manifest_path(&key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "{not json").unwrap();
        let e = store.get_manifest(&key).unwrap_err();
        assert!(matches!(e, StoreError::BadManifest { .. }), "{e:?}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");

        let other = Digest::of(b"other");
        let m = manifest(other, &[], "n");
        fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = store.get_manifest(&key).unwrap_err();
        assert!(e.to_string().contains("stored under"), "{e}");
    }

    #[test]
    fn open_under_a_regular_file_is_unwritable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let root = file.join("store");
        let e = Store::open(&root).unwrap_err();
        assert!(matches!(e, StoreError::Unwritable { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("cannot write to store "), "{msg}");
        assert!(msg.contains(&*root.to_string_lossy()), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn open_existing_requires_a_directory_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("absent");
        let e = Store::open_existing(&root).unwrap_err();
        assert!(e.to_string().contains(&*root.to_string_lossy()), "{e}");
        assert!(!root.exists());
        let store = Store::open_existing(dir.path()).unwrap();
        assert_eq!(store.blobs().unwrap(), vec![]);
        assert_eq!(store.get_manifest(&Digest::of(b"k")).unwrap(), None);
        assert!(!dir.path().join("blobs").exists());
    }

    #[test]
    fn json_files_round_trip_and_are_replaced() {
        let (_dir, store) = store();
        let rel = "experiments/checkerboard.json";
        assert_eq!(store.read_json::<Vec<u32>>(rel).unwrap(), None);
        store.write_json(rel, &vec![1u32, 2]).unwrap();
        store.write_json(rel, &vec![3u32]).unwrap();
        assert_eq!(store.read_json::<Vec<u32>>(rel).unwrap(), Some(vec![3]));
        store.write_json("new/dir/x.json", &"s").unwrap();
        assert_eq!(
            store
                .read_json::<String>("new/dir/x.json")
                .unwrap()
                .as_deref(),
            Some("s")
        );
        let e = store.read_json::<String>(rel).unwrap_err();
        assert!(matches!(e, StoreError::BadJson { .. }), "{e:?}");
        assert!(e.to_string().contains("checkerboard.json"), "{e}");
        for bad in ["../escape.json", "/abs.json", "", "a/../../b"] {
            assert!(store.write_json(bad, &1).is_err(), "{bad}");
        }
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn blobs_skips_foreign_files() {
        let (_dir, store) = store();
        let d = store.put_bytes(b"x").unwrap();
        let fan = store.blob_path(&d).parent().unwrap().to_path_buf();
        fs::write(fan.join("notes.txt"), b"").unwrap();
        fs::write(store.root().join("blobs/README"), b"").unwrap();
        assert_eq!(store.blobs().unwrap(), vec![d]);
    }

    #[test]
    fn blob_writer_hashes_as_it_writes_and_cleans_up() {
        let (_dir, store) = store();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = store.blob_writer().unwrap();
        for piece in data.chunks(7_001) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.digest().unwrap(), Digest::of(&data));
        let d = w.finish().unwrap();
        assert_eq!(d, Digest::of(&data));
        let meta = fs::metadata(store.blob_path(&d)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
        assert_eq!(store.read_blob(&d).unwrap(), data);
        assert!(tmp_is_empty(&store));

        // The same content again keeps the first blob.
        let mut w = store.blob_writer().unwrap();
        w.write_all(&data).unwrap();
        assert_eq!(w.finish().unwrap(), d);
        assert_eq!(fs::metadata(store.blob_path(&d)).unwrap().ino(), meta.ino());
        assert!(tmp_is_empty(&store));

        // Dropped unfinished: nothing stored, nothing left in tmp/.
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"abandoned").unwrap();
        drop(w);
        assert!(!store.has_blob(&Digest::of(b"abandoned")));
        assert!(tmp_is_empty(&store));

        let empty = store.blob_writer().unwrap().finish().unwrap();
        assert_eq!(empty, Digest::of(b""));
        assert_eq!(store.read_blob(&empty).unwrap(), b"");
    }

    #[test]
    fn concurrent_puts_of_one_blob_agree() {
        let (_dir, store) = store();
        let data = vec![7u8; 1 << 16];
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| store.put_bytes(&data).unwrap());
            }
        });
        assert_eq!(store.read_blob(&Digest::of(&data)).unwrap(), data);
        assert!(tmp_is_empty(&store));
    }
}
