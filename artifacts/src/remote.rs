//! Remotes (SPEC §2.4): object stores, S3-compatible or a local directory, holding copies of
//! blobs and manifests so that one machine fetches what another computed.
//!
//! Layout under the remote's prefix: `blobs/<64 hex>`, `ac/<64 hex>.json` and
//! `records/<experiment>/<64 hex>.json` (one [`PushRecord`] per push). Everything is written
//! only if absent. Everything fetched is checked against its digest (a manifest against its
//! key) before it enters the local store. A push sends blobs before the manifests that name
//! them, and its record last, so a manifest on the remote has its blobs there even after a push
//! was killed; a rerun sends only what is missing.
//!
//! Requests scale with the work, not with the remote: a push asks about each object it would
//! send (HEAD), a pull fetches the manifests it needs by key and learns blob sizes from them;
//! neither lists the remote (only `pull` without an experiment lists its manifests). A
//! `file://` remote fsyncs every object it writes, like the local store ([`file_store`]).
//!
//! Blobs larger than the part size ([`Remote::with_part_size`]) stream: a push reads the file
//! in parts sent as a multipart upload (which becomes visible only when complete, and is
//! aborted on failure), a pull fetches ranged parts streamed to a temp file while hashing. At
//! most `jobs` parts are held in memory at once, whatever the blobs' sizes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, GetResult, GetResultPayload,
    MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use tokio::sync::Semaphore;
use tokio::task::{spawn_blocking, JoinSet};

use crate::{BlobWriter, Digest, Manifest, PushRecord, Store, StoreError};

/// Objects transferred at once by default.
pub const DEFAULT_JOBS: usize = 16;

/// Default size of the parts in which large blobs are sent and fetched (8 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// Bytes of a fetched body gathered before they are written to disk.
const WRITE_BATCH: usize = 1 << 20;

/// Where a remote URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `s3://bucket/prefix`: any S3-compatible server, configured by the AWS environment.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing slashes (may be empty).
        prefix: String,
    },
    /// `file:///path`: a directory, e.g. on a shared filesystem.
    File {
        /// The absolute directory.
        dir: PathBuf,
    },
}

impl Location {
    /// Parses `s3://bucket[/prefix]` or `file:///absolute/path`.
    pub fn parse(url: &str) -> Result<Location, RemoteError> {
        let bad = |why: &str| RemoteError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c);
            if bucket.len() < 3 || !bucket.chars().all(valid) {
                return Err(bad("expected s3://BUCKET/PREFIX with a bucket name of 3 or more lowercase letters, digits, '-' or '.'"));
            }
            Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("expected file:///ABSOLUTE/PATH (three slashes)"));
            }
            Ok(Location::File {
                dir: PathBuf::from(path),
            })
        } else {
            Err(bad("expected s3://BUCKET/PREFIX or file:///PATH"))
        }
    }
}

/// A failure to use a remote; `Display` is one line naming the remote.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A URL that is neither `s3://` nor `file://`.
    #[error("bad remote URL `{url}`: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What was expected.
        why: String,
    },
    /// The remote cannot be used: unreachable, access denied, no such bucket or directory, ...
    #[error("remote `{remote}` ({url}): {problem}")]
    Unusable {
        /// The remote's name.
        remote: String,
        /// Its URL.
        url: String,
        /// What went wrong, with what to check.
        problem: String,
    },
    /// An object on the remote that should be readable is not (e.g. a push record that does
    /// not parse or does not match its name).
    #[error("remote `{remote}`: {object} {why}")]
    BadObject {
        /// The remote's name.
        remote: String,
        /// The object's key under the remote's prefix.
        object: String,
        /// What is wrong with it.
        why: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Local(#[from] StoreError),
}

/// Receives the progress of a transfer.
pub trait Progress: Sync {
    /// Called once, with how many objects and bytes are to be transferred.
    fn start(&self, _objects: u64, _bytes: u64) {}
    /// Called after each object, with its size.
    fn advance(&self, _bytes: u64) {}
}

/// A [`Progress`] that shows nothing.
pub struct Silent;
impl Progress for Silent {}

/// What a push or pull did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Transfer {
    /// Objects (blobs and manifests) transferred.
    pub objects: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Objects the other side had already.
    pub present: u64,
    /// Problems that kept objects out of the local store: corrupt or missing remote blobs, bad
    /// remote manifests. Empty after a clean transfer.
    pub problems: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The result of fetching one node's result for `run --remote`.
#[derive(Debug)]
pub enum Fetch {
    /// The manifest and all its blobs are now in the local store.
    Fetched(Box<Manifest>),
    /// The remote does not have this key.
    Absent,
    /// The remote has it, but something was wrong; nothing was stored.
    Rejected {
        /// What was wrong, one line.
        why: String,
        /// What was bad on the remote: the digests of missing or corrupt blobs, or the key of a
        /// manifest that does not parse.
        bad: Vec<Digest>,
    },
}

/// A remote object store, with its own small async runtime behind a blocking interface.
pub struct Remote {
    name: String,
    url: String,
    objects: Arc<dyn ObjectStore>,
    /// Empty, or the key prefix ending in `/`.
    prefix: String,
    runtime: tokio::runtime::Runtime,
    jobs: usize,
    part_size: usize,
    /// One permit per part buffer that may be in memory (`jobs` in all).
    parts: Arc<Semaphore>,
    /// Where unfinished uploads are found (for gc).
    uploads: uploads::Uploads,
}

impl Remote {
    /// Connects to the remote `name` at `url` (nothing is sent until an operation; see
    /// [`Remote::check`]). S3 settings come from the standard AWS environment variables.
    pub fn open(name: &str, url: &str) -> Result<Remote, RemoteError> {
        let (objects, prefix) = connect(name, url)?;
        let mut remote = Remote::from_store(name, url, objects, &prefix)?;
        remote.uploads = uploads::Uploads::at(url);
        Ok(remote)
    }

    /// A remote named `name` over a given object store, its objects under `prefix` (without
    /// leading or trailing slashes; may be empty); `url` only names it in messages. This is how
    /// a wrapped store, e.g. [`crate::counting::Counting`] around what [`connect`] gives, is
    /// put behind a remote.
    pub fn from_store(
        name: &str,
        url: &str,
        objects: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> Result<Remote, RemoteError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Unusable {
                remote: name.to_string(),
                url: url.to_string(),
                problem: format!("cannot start the I/O runtime: {e}"),
            })?;
        let prefix = prefix.trim_matches('/');
        Ok(Remote {
            name: name.to_string(),
            url: url.to_string(),
            objects,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            runtime,
            jobs: DEFAULT_JOBS,
            part_size: DEFAULT_PART_SIZE,
            parts: Arc::new(Semaphore::new(DEFAULT_JOBS)),
            uploads: uploads::Uploads::Unknown,
        })
    }

    /// Sets how many objects, and parts of large blobs, are transferred at once (at least 1).
    /// Memory held for pushed data stays under `jobs` x the part size.
    pub fn with_jobs(mut self, jobs: usize) -> Remote {
        self.jobs = jobs.max(1);
        self.parts = Arc::new(Semaphore::new(self.jobs));
        self
    }

    /// Sets the size of the parts of large blobs (at least 1 byte): blobs up to this size go in
    /// one request, larger ones as a multipart upload and ranged reads. S3 needs 5 MiB or more.
    pub fn with_part_size(mut self, bytes: usize) -> Remote {
        self.part_size = bytes.max(1);
        self
    }

    /// The remote's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The remote's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Lists the top level under the prefix (`blobs/`, `ac/`, `records/`: one request,
    /// whatever the remote holds), so that bad credentials, an unreachable endpoint or a
    /// missing bucket are found before any work, with one clear error.
    pub fn check(&self) -> Result<(), RemoteError> {
        let prefix = ObjectPath::from(self.prefix.as_str());
        self.runtime.block_on(async {
            match self.objects.list_with_delimiter(Some(&prefix)).await {
                Ok(_) => Ok(()),
                Err(e) => Err(self.fail(&e)),
            }
        })
    }

    /// Keys of all manifests on the remote.
    pub fn manifest_keys(&self) -> Result<Vec<Digest>, RemoteError> {
        let listed = self.runtime.block_on(self.list("ac/", ".json"))?;
        Ok(listed.into_keys().collect())
    }

    /// Sends the given manifests and the blobs they name, those the remote lacks: blobs first,
    /// then manifests. Each object is asked about (HEAD) and sent only when absent, so the
    /// requests grow with the manifests given, not with the remote. Progress counts every
    /// object of the push, sized from the manifests (from the local files for manifests that
    /// predate sizes). Local blobs are verified as they are read. After the manifests, the
    /// objects found already there are asked about again and sent if a remote gc removed them
    /// meanwhile (see `gc`).
    pub fn push(
        &self,
        local: &Store,
        manifests: &[Manifest],
        progress: &dyn Progress,
    ) -> Result<Transfer, RemoteError> {
        let clock = Instant::now();
        let blobs: BTreeMap<Digest, u64> = blob_sizes(manifests)
            .into_iter()
            .map(|(d, size)| (d, size.unwrap_or_else(|| local.blob_size(&d))))
            .collect();
        let manifest_sizes: Vec<u64> = manifests
            .iter()
            .map(|m| file_size(&local.manifest_path(&m.key)))
            .collect();
        progress.start(
            (blobs.len() + manifests.len()) as u64,
            blobs.values().sum::<u64>() + manifest_sizes.iter().sum::<u64>(),
        );
        let counter = &Counter::default();
        let blob_list: Vec<(Digest, u64)> = blobs.into_iter().collect();
        let sized: Vec<(&Manifest, u64)> = manifests.iter().zip(manifest_sizes).collect();
        self.runtime.block_on(async {
            let relied = self
                .send_blobs(local, &blob_list, (counter, progress))
                .await?;
            push_hook("before-manifests");
            let relied_on = self
                .send_manifests(local, &sized, (counter, progress))
                .await?;
            // A remote gc may have removed what was there when asked (and unreached then):
            // ask again now that the manifests are written, and send what vanished.
            let again: Vec<(Digest, u64)> = blob_list
                .iter()
                .filter(|(d, _)| relied.contains(d))
                .copied()
                .collect();
            let quiet = (&Counter::default(), &Silent as &dyn Progress);
            self.send_blobs(local, &again, quiet).await?;
            let again: Vec<(&Manifest, u64)> = sized
                .iter()
                .filter(|(m, _)| relied_on.contains(&m.key))
                .copied()
                .collect();
            self.send_manifests(local, &again, quiet).await
        })?;
        Ok(counter.transfer(0, Vec::new(), clock))
    }

    /// Sends each blob the remote lacks (asking with one HEAD each); returns those it had.
    async fn send_blobs(
        &self,
        local: &Store,
        blobs: &[(Digest, u64)],
        (counter, progress): (&Counter, &dyn Progress),
    ) -> Result<BTreeSet<Digest>, RemoteError> {
        let buffers = &Buffers::default();
        let present: Vec<Option<Digest>> =
            futures::stream::iter(blobs.iter().map(|&(d, size)| async move {
                if self.exists(&self.blob(&d)).await? {
                    counter.skip(size, progress);
                    return Ok(Some(d));
                }
                let (created, len) = self.put_blob(local, &d, PutMode::Create, buffers).await?;
                counter.add(created, len, progress);
                Ok::<_, RemoteError>(None)
            }))
            .buffer_unordered(self.jobs)
            .try_collect()
            .await?;
        Ok(present.into_iter().flatten().collect())
    }

    /// Sends each manifest the remote lacks (asking with one HEAD each); returns the keys of
    /// those it had.
    async fn send_manifests(
        &self,
        local: &Store,
        manifests: &[(&Manifest, u64)],
        (counter, progress): (&Counter, &dyn Progress),
    ) -> Result<BTreeSet<Digest>, RemoteError> {
        let present: Vec<Option<Digest>> =
            futures::stream::iter(manifests.iter().map(|&(m, size)| async move {
                let path = self.manifest(&m.key);
                if self.exists(&path).await? {
                    counter.skip(size, progress);
                    return Ok(Some(m.key));
                }
                let file = local.manifest_path(&m.key);
                let bytes = std::fs::read(&file).map_err(|e| StoreError::io(&file, e))?;
                let len = bytes.len() as u64;
                let created = self.put(&path, bytes, PutMode::Create).await?;
                counter.add(created, len, progress);
                Ok::<_, RemoteError>(None)
            }))
            .buffer_unordered(self.jobs)
            .try_collect()
            .await?;
        Ok(present.into_iter().flatten().collect())
    }

    /// Writes a push record (after its push) under `records/<experiment>/<digest>.json`,
    /// unless an identical one is there; returns its digest.
    pub fn put_record(&self, record: &PushRecord) -> Result<Digest, RemoteError> {
        let bytes = record.to_bytes();
        let d = Digest::of(&bytes);
        let path = self.record(record.folder(), &d);
        self.runtime
            .block_on(self.put(&path, bytes, PutMode::Create))?;
        Ok(d)
    }

    /// The push records of `experiment` (`None`: of pushes of whole stores), by digest. Lists
    /// only that experiment's records. A record that cannot be read, does not parse or does
    /// not match its name is an error naming it: records are roots, and a root that cannot be
    /// trusted must stop whoever relies on them.
    pub fn records(
        &self,
        experiment: Option<&str>,
    ) -> Result<Vec<(Digest, PushRecord)>, RemoteError> {
        let folder = experiment.unwrap_or(crate::WHOLE_STORE);
        let dir = self.records_dir(folder);
        self.runtime.block_on(async {
            let listed: Vec<object_store::ObjectMeta> = self
                .objects
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| self.fail(&e))?;
            let mut records = Vec::new();
            for meta in listed {
                records.push(self.get_record(&meta.location).await?);
            }
            records.sort_by(|a, b| (&a.1.pushed, a.0).cmp(&(&b.1.pushed, b.0)));
            Ok(records)
        })
    }

    /// Reads and checks one push record.
    async fn get_record(&self, path: &ObjectPath) -> Result<(Digest, PushRecord), RemoteError> {
        let bad = |why: String| RemoteError::BadObject {
            remote: self.name.clone(),
            object: path.to_string(),
            why,
        };
        let name = path
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|f| f.parse::<Digest>().ok())
            .ok_or_else(|| bad("is not named <digest>.json".into()))?;
        let got = self.objects.get(path).await.map_err(|e| self.fail(&e))?;
        let bytes = got.bytes().await.map_err(|e| self.fail(&e))?;
        if Digest::of(&bytes) != name {
            return Err(bad("does not match its name (corrupt)".into()));
        }
        let record = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("does not parse as a push record ({e})")))?;
        Ok((name, record))
    }

    /// Sends one node's blobs and manifest, skipping what the remote has (for `run --push`).
    /// Blobs and the manifest named in `replace` (found bad on the remote) are overwritten with
    /// the local copies: safe, as a blob's name fixes its content and any valid manifest for a
    /// key is as good as another. Returns what was replaced.
    pub fn push_one(
        &self,
        local: &Store,
        m: &Manifest,
        replace: &BTreeSet<Digest>,
    ) -> Result<Vec<Digest>, RemoteError> {
        let mode = |replacing: bool| {
            if replacing {
                PutMode::Overwrite
            } else {
                PutMode::Create
            }
        };
        self.runtime.block_on(async {
            let mut replaced = Vec::new();
            let buffers = Buffers::default();
            for d in m.outputs.values() {
                let path = self.blob(d);
                let replacing = replace.contains(d);
                if !replacing && self.exists(&path).await? {
                    continue;
                }
                self.put_blob(local, d, mode(replacing), &buffers).await?;
                if replacing {
                    replaced.push(*d);
                }
            }
            let path = local.manifest_path(&m.key);
            let bytes = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
            let replacing = replace.contains(&m.key);
            self.put(&self.manifest(&m.key), bytes, mode(replacing))
                .await?;
            if replacing {
                replaced.push(m.key);
            }
            Ok(replaced)
        })
    }

    /// Fetches the manifests stored under `keys`, those the remote has. Manifests that do not
    /// parse or name another key are left out, each with its key and a problem line.
    #[allow(clippy::type_complexity)]
    pub fn get_manifests(
        &self,
        keys: &[Digest],
    ) -> Result<(Vec<Manifest>, Vec<(Digest, String)>), RemoteError> {
        self.runtime.block_on(async {
            let fetched: Vec<Option<Result<Manifest, String>>> =
                futures::stream::iter(keys.iter().map(|k| self.get_manifest(k)))
                    .buffered(self.jobs)
                    .try_collect()
                    .await?;
            let mut manifests = Vec::new();
            let mut problems = Vec::new();
            for (k, m) in keys.iter().zip(fetched) {
                match m {
                    Some(Ok(m)) => manifests.push(m),
                    Some(Err(p)) => problems.push((*k, p)),
                    None => {}
                }
            }
            Ok((manifests, problems))
        })
    }

    /// Fetches the given blobs that the local store lacks (sizes where known, else asked),
    /// each checked against its name. Returns each blob that is missing or corrupt on the
    /// remote with a problem line; an error only when the remote cannot be used.
    pub fn get_blobs(
        &self,
        local: &Store,
        blobs: &BTreeMap<Digest, Option<u64>>,
        progress: &dyn Progress,
    ) -> Result<Vec<(Digest, String)>, RemoteError> {
        let wanted: BTreeSet<Digest> = blobs
            .keys()
            .filter(|d| !local.has_blob(d))
            .copied()
            .collect();
        let sizes: HashMap<Digest, u64> = wanted
            .iter()
            .filter_map(|d| Some((*d, blobs[d]?)))
            .collect();
        progress.start(wanted.len() as u64, sizes.values().sum());
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        self.runtime
            .block_on(self.download(local, &wanted, &sizes, &Counter::default(), progress))
    }

    /// Brings the given (remote) manifests into the local store with the blobs it lacks. A blob
    /// is stored only when its content matches its name; a manifest only when all its blobs are
    /// then present. What was kept out is listed in [`Transfer::problems`]. Blob sizes (for
    /// progress and ranged reads) come from the manifests; only blobs of manifests that predate
    /// sizes are asked about (HEAD).
    pub fn pull(
        &self,
        local: &Store,
        manifests: &[Manifest],
        progress: &dyn Progress,
    ) -> Result<Transfer, RemoteError> {
        let clock = Instant::now();
        let named = blob_sizes(manifests);
        let wanted: BTreeSet<Digest> = named
            .keys()
            .filter(|d| !local.has_blob(d))
            .copied()
            .collect();
        let new_manifests = manifests
            .iter()
            .filter(|m| !local.manifest_path(&m.key).is_file())
            .count();
        self.runtime.block_on(async {
            let sizes = self.sizes(&wanted, &named).await?;
            let bytes = sizes.values().sum();
            progress.start((wanted.len() + new_manifests) as u64, bytes);
            let got = Counter::default();
            let bad = self
                .download(local, &wanted, &sizes, &got, progress)
                .await?;
            let mut problems: Vec<String> = bad.into_iter().map(|(_, p)| p).collect();
            for m in manifests {
                match m.outputs.iter().find(|(_, d)| !local.has_blob(d)) {
                    None => {
                        if local.put_manifest(m)? {
                            got.add(true, 0, progress);
                        }
                    }
                    Some((output, d)) => problems.push(format!(
                        "node {} not fetched: its output {output} (blob {}...) could not be fetched",
                        m.provenance.node,
                        d.short()
                    )),
                }
            }
            let present = named.len() - wanted.len() + manifests.len() - new_manifests;
            Ok(got.transfer(present as u64, problems, clock))
        })
    }

    /// The sizes of the `wanted` blobs: from `named` (sizes the manifests record), else asked of
    /// the remote (HEAD); a blob the remote lacks is left out (its download reports it).
    async fn sizes(
        &self,
        wanted: &BTreeSet<Digest>,
        named: &BTreeMap<Digest, Option<u64>>,
    ) -> Result<HashMap<Digest, u64>, RemoteError> {
        let known = wanted.iter().filter_map(|d| Some((*d, named[d]?)));
        let mut sizes: HashMap<Digest, u64> = known.collect();
        let unknown = wanted.iter().filter(|d| !sizes.contains_key(d));
        let asked: Vec<Option<(Digest, u64)>> =
            futures::stream::iter(unknown.map(|&d| async move {
                match self.objects.head(&self.blob(&d)).await {
                    Ok(meta) => Ok(Some((d, meta.size))),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.fail(&e)),
                }
            }))
            .buffer_unordered(self.jobs)
            .try_collect()
            .await?;
        sizes.extend(asked.into_iter().flatten());
        Ok(sizes)
    }

    /// Fetches the result stored under `key`, manifest and blobs, into the local store.
    pub fn fetch(&self, local: &Store, key: &Digest) -> Result<Fetch, RemoteError> {
        self.runtime.block_on(async {
            let m = match self.get_manifest(key).await? {
                None => return Ok(Fetch::Absent),
                Some(Err(why)) => {
                    return Ok(Fetch::Rejected {
                        why,
                        bad: vec![*key],
                    })
                }
                Some(Ok(m)) => m,
            };
            let wanted: BTreeSet<Digest> = m
                .outputs
                .values()
                .filter(|d| !local.has_blob(d))
                .copied()
                .collect();
            let sizes: HashMap<Digest, u64> =
                m.blobs().filter_map(|(d, size)| Some((d, size?))).collect();
            let bad = self
                .download(local, &wanted, &sizes, &Counter::default(), &Silent)
                .await?;
            if !bad.is_empty() {
                let why: Vec<String> = bad.iter().map(|(_, p)| p.clone()).collect();
                return Ok(Fetch::Rejected {
                    why: why.join("; "),
                    bad: bad.into_iter().map(|(d, _)| d).collect(),
                });
            }
            local.put_manifest(&m)?;
            Ok(Fetch::Fetched(Box::new(m)))
        })
    }

    /// Sends the given local blobs that the remote lacks (what a Slurm job on a machine without
    /// the driver's store reads: node specifications and parents' outputs).
    pub fn push_blobs(&self, local: &Store, blobs: &[Digest]) -> Result<(), RemoteError> {
        self.runtime.block_on(async {
            let buffers = &Buffers::default();
            futures::stream::iter(blobs.iter().map(|d| async move {
                if !self.exists(&self.blob(d)).await? {
                    self.put_blob(local, d, PutMode::Create, buffers).await?;
                }
                Ok(())
            }))
            .buffer_unordered(self.jobs)
            .try_collect::<()>()
            .await
        })
    }

    /// Fetches the given blobs that the local store lacks, each checked against its name;
    /// one that is missing or corrupt on the remote is an error naming it.
    pub fn fetch_blobs(&self, local: &Store, blobs: &[Digest]) -> Result<(), RemoteError> {
        let wanted: BTreeSet<Digest> = blobs
            .iter()
            .filter(|d| !local.has_blob(d))
            .copied()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let bad = self.runtime.block_on(self.download(
            local,
            &wanted,
            &HashMap::new(),
            &Counter::default(),
            &Silent,
        ))?;
        match bad.into_iter().next() {
            None => Ok(()),
            Some((_, why)) => Err(self.unusable(why)),
        }
    }

    /// Downloads blobs in parallel, storing those whose content matches their name; returns
    /// each blob that is missing on the remote or corrupt, with a problem line. `sizes` holds
    /// the blobs' sizes where known; other blobs' sizes are asked for.
    async fn download(
        &self,
        local: &Store,
        wanted: &BTreeSet<Digest>,
        sizes: &HashMap<Digest, u64>,
        got: &Counter,
        progress: &dyn Progress,
    ) -> Result<Vec<(Digest, String)>, RemoteError> {
        let fetch_one = |d: Digest| async move {
            let missing = || {
                let why = format!("blob {}... is missing on remote `{}`", d.short(), self.name);
                Ok(Some((d, why)))
            };
            let size = match sizes.get(&d) {
                Some(&size) => size,
                None => match self.objects.head(&self.blob(&d)).await {
                    Ok(meta) => meta.size,
                    Err(object_store::Error::NotFound { .. }) => return missing(),
                    Err(e) => return Err(self.fail(&e)),
                },
            };
            let Some((mut writer, len)) = self.get_blob(local, &d, size).await? else {
                return missing();
            };
            let stored = joined(
                spawn_blocking(move || {
                    if writer.digest()? != d {
                        return Ok(false);
                    }
                    writer.finish().map(|_| true)
                })
                .await,
            )?;
            if !stored {
                let why = format!(
                    "blob {}... on remote `{}` is corrupt (its content does not match its name); not stored",
                    d.short(),
                    self.name
                );
                return Ok(Some((d, why)));
            }
            got.add(true, len, progress);
            Ok::<_, RemoteError>(None)
        };
        let problems: Vec<Option<(Digest, String)>> =
            futures::stream::iter(wanted.iter().copied().map(fetch_one))
                .buffer_unordered(self.jobs)
                .try_collect()
                .await?;
        Ok(problems.into_iter().flatten().collect())
    }

    /// Streams the blob `d`, `size` bytes as recorded, into a new local blob writer, in ranged
    /// requests of the part size when larger; returns the writer and the bytes received, or
    /// `None` when the remote lacks the blob.
    async fn get_blob(
        &self,
        local: &Store,
        d: &Digest,
        mut size: u64,
    ) -> Result<Option<(BlobWriter, u64)>, RemoteError> {
        let path = self.blob(d);
        let part = self.part_size as u64;
        let mut writer = local.blob_writer()?;
        let mut offset = 0;
        loop {
            let range = (size > part).then(|| GetRange::Bounded(offset..size.min(offset + part)));
            let ranged = range.is_some();
            let options = GetOptions {
                range,
                ..Default::default()
            };
            let got = match self.objects.get_opts(&path, options).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.fail(&e)),
            };
            size = got.meta.size;
            let received;
            (writer, received) = self.receive(got, writer).await?;
            offset += received;
            if !ranged || received == 0 || offset >= size {
                return Ok(Some((writer, offset)));
            }
        }
    }

    /// Appends the body of a GET to `writer`, written to disk off the async threads; returns
    /// the writer and the body's length.
    async fn receive(
        &self,
        got: GetResult,
        writer: BlobWriter,
    ) -> Result<(BlobWriter, u64), RemoteError> {
        let range = got.range;
        let mut body = match got.payload {
            GetResultPayload::File(file, path) => {
                let copied = spawn_blocking(move || copy_range(file, &path, range, writer));
                return Ok(joined(copied.await)?);
            }
            GetResultPayload::Stream(body) => body,
        };
        let mut writer = writer;
        let mut batch = Vec::new();
        let mut batched = 0;
        let mut received = 0;
        loop {
            let chunk = body.next().await.transpose().map_err(|e| self.fail(&e))?;
            let end = chunk.is_none();
            if let Some(chunk) = chunk {
                batched += chunk.len();
                batch.push(chunk);
            }
            if batched >= WRITE_BATCH || (end && batched > 0) {
                let full = std::mem::take(&mut batch);
                writer = joined(spawn_blocking(move || write_batch(writer, &full)).await)?;
                received += batched as u64;
                batched = 0;
            }
            if end {
                return Ok((writer, received));
            }
        }
    }

    /// The manifest under `key`: `None` when absent, `Some(Err(problem))` when it is bad.
    async fn get_manifest(
        &self,
        key: &Digest,
    ) -> Result<Option<Result<Manifest, String>>, RemoteError> {
        let bytes = match self.objects.get(&self.manifest(key)).await {
            Ok(r) => r.bytes().await.map_err(|e| self.fail(&e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail(&e)),
        };
        let bad = |why: String| {
            Ok(Some(Err(format!(
                "manifest {}... on remote `{}` {why}; not fetched",
                key.short(),
                self.name
            ))))
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.key == *key => Ok(Some(Ok(m))),
            Ok(m) => bad(format!("names key {}...", m.key.short())),
            Err(e) => bad(format!("does not parse ({e})")),
        }
    }

    /// Whether an object exists at `path` (one HEAD request).
    async fn exists(&self, path: &ObjectPath) -> Result<bool, RemoteError> {
        match self.objects.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Digests named by the objects under `dir` (e.g. "ac/"), with their sizes.
    async fn list(&self, dir: &str, suffix: &str) -> Result<HashMap<Digest, u64>, RemoteError> {
        let prefix = ObjectPath::from(format!("{}{dir}", self.prefix));
        let mut out = HashMap::new();
        let mut listing = self.objects.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.fail(&e))?;
            let digest = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(suffix))
                .and_then(|f| f.parse::<Digest>().ok());
            if let Some(d) = digest {
                out.insert(d, meta.size);
            }
        }
        Ok(out)
    }

    /// Writes an object; with `PutMode::Create`, only if none exists at `path`. True if written.
    async fn put(
        &self,
        path: &ObjectPath,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<bool, RemoteError> {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .objects
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Sends a local blob: in one request up to the part size, else as a multipart upload
    /// streamed from the file. The content is checked against its name as it is read; an
    /// upload that fails or turns out corrupt is aborted, leaving no object. A multipart upload
    /// cannot be create-if-absent (`mode` is then ignored): harmless, as a blob's name fixes
    /// its content. Returns whether it was written (false: the remote had it) and its size.
    async fn put_blob(
        &self,
        local: &Store,
        d: &Digest,
        mode: PutMode,
        buffers: &Buffers,
    ) -> Result<(bool, u64), RemoteError> {
        let src = local.blob_path(d);
        let size = match std::fs::metadata(&src) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    digest: *d,
                    path: src,
                }
                .into())
            }
            Err(e) => return Err(StoreError::io(src, e).into()),
        };
        let path = self.blob(d);
        if size <= self.part_size as u64 {
            let _budget = self.parts.acquire().await.expect("never closed");
            let bytes = local.read_blob(d)?;
            let len = bytes.len() as u64;
            return Ok((self.put(&path, bytes, mode).await?, len));
        }
        let upload = self
            .objects
            .put_multipart(&path)
            .await
            .map_err(|e| self.fail(&e))?;
        let mut upload = Upload(Some(upload));
        let done = match self.send_parts(upload.get(), d, &src, buffers).await {
            Ok(()) => upload.get().complete().await.map_err(|e| self.fail(&e)),
            Err(e) => Err(e),
        };
        match done {
            Ok(_) => {
                upload.0 = None;
                Ok((true, size))
            }
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }

    /// Reads the blob at `src` part by part, sending each as soon as it is read and a permit
    /// is free; checks the content against `d` once all are sent.
    async fn send_parts(
        &self,
        upload: &mut dyn MultipartUpload,
        d: &Digest,
        src: &Path,
        buffers: &Buffers,
    ) -> Result<(), RemoteError> {
        let file = std::fs::File::open(src).map_err(|e| StoreError::io(src, e))?;
        let mut state = (file, blake3::Hasher::new());
        let mut sending = JoinSet::new();
        let sent = async {
            loop {
                let permit = Arc::clone(&self.parts)
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let (file, hasher) = state;
                let (buf, size) = (buffers.take(self.part_size), self.part_size);
                let read = spawn_blocking(move || read_part(file, hasher, buf, size));
                let (file, hasher, part) =
                    joined(read.await).map_err(|e| StoreError::io(src, e))?;
                state = (file, hasher);
                if part.is_empty() {
                    buffers.put(part);
                    break;
                }
                let part = bytes::Bytes::from_owner(Pooled {
                    buf: part,
                    pool: buffers.clone(),
                });
                let request = upload.put_part(PutPayload::from(part));
                sending.spawn(async move {
                    let result = request.await;
                    drop(permit);
                    result
                });
                while let Some(done) = sending.try_join_next() {
                    joined(done).map_err(|e| self.fail(&e))?;
                }
            }
            while let Some(done) = sending.join_next().await {
                joined(done).map_err(|e| self.fail(&e))?;
            }
            if Digest(*state.1.finalize().as_bytes()) != *d {
                let path = src.to_path_buf();
                return Err(StoreError::Corrupt { digest: *d, path }.into());
            }
            Ok(())
        }
        .await;
        if sent.is_err() {
            sending.shutdown().await;
        }
        sent
    }

    fn blob(&self, d: &Digest) -> ObjectPath {
        ObjectPath::from(format!("{}blobs/{}", self.prefix, d.hex()))
    }

    fn manifest(&self, key: &Digest) -> ObjectPath {
        ObjectPath::from(format!("{}ac/{}.json", self.prefix, key.hex()))
    }

    /// `records/<folder>/` under the prefix; the folder (an experiment name) is one path
    /// segment, escaped where it holds characters object keys should not.
    fn records_dir(&self, folder: &str) -> ObjectPath {
        ObjectPath::from(format!("{}records", self.prefix)).join(PathPart::from(folder))
    }

    fn record(&self, folder: &str, d: &Digest) -> ObjectPath {
        self.records_dir(folder).join(format!("{}.json", d.hex()))
    }

    fn fail(&self, e: &object_store::Error) -> RemoteError {
        let bucket = match Location::parse(&self.url) {
            Ok(Location::S3 { bucket, .. }) => bucket,
            _ => String::new(),
        };
        self.unusable(describe(e, &bucket))
    }

    /// This remote's error, with what was wrong.
    fn unusable(&self, problem: String) -> RemoteError {
        RemoteError::Unusable {
            remote: self.name.clone(),
            url: self.url.clone(),
            problem,
        }
    }
}

/// A multipart upload, aborted in the background if dropped before it completes (a push
/// cancelled by another blob's failure), so that its parts do not linger.
struct Upload(Option<Box<dyn MultipartUpload>>);

impl Upload {
    fn get(&mut self) -> &mut dyn MultipartUpload {
        self.0.as_deref_mut().expect("upload in progress")
    }

    /// Aborts now; an abort that fails leaves parts but no object, so it is not reported.
    async fn abort(&mut self) {
        if let Some(mut upload) = self.0.take() {
            let _ = upload.abort().await;
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let (Some(mut upload), Ok(runtime)) =
            (self.0.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// The output of a finished task; a panic in the task is resumed here.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> T {
    match result {
        Ok(t) => t,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("transfer task cancelled: {e}"),
        },
    }
}

/// Reads the next part (up to `size` bytes; none at the end) into the empty `part` and adds it
/// to the hash.
fn read_part(
    mut file: std::fs::File,
    mut hasher: blake3::Hasher,
    mut part: Vec<u8>,
    size: usize,
) -> std::io::Result<(std::fs::File, blake3::Hasher, Vec<u8>)> {
    (&mut file).take(size as u64).read_to_end(&mut part)?;
    hasher.update(&part);
    Ok((file, hasher, part))
}

/// Part buffers of one push, reused from part to part: allocating one per part lets the
/// allocator's per-thread arenas hold several times the bytes in flight.
#[derive(Clone, Default)]
struct Buffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    /// An empty buffer with room for `size` bytes.
    fn take(&self, size: usize) -> Vec<u8> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match kept {
            Some(mut buf) if buf.capacity() >= size => {
                buf.clear();
                buf
            }
            _ => Vec::with_capacity(size),
        }
    }

    fn put(&self, buf: Vec<u8>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf);
    }
}

/// A part's bytes, handed back to its [`Buffers`] once the upload has sent them.
struct Pooled {
    buf: Vec<u8>,
    pool: Buffers,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

/// Appends chunks of a body to a blob being written.
fn write_batch<B: AsRef<[u8]>>(
    mut writer: BlobWriter,
    batch: &[B],
) -> Result<BlobWriter, StoreError> {
    for chunk in batch {
        writer
            .write_all(chunk.as_ref())
            .map_err(|e| StoreError::io(writer.path(), e))?;
    }
    Ok(writer)
}

/// Appends `range` of a file of a `file://` remote to a blob being written; returns the writer
/// and the bytes copied.
fn copy_range(
    mut file: std::fs::File,
    path: &Path,
    range: std::ops::Range<u64>,
    mut writer: BlobWriter,
) -> Result<(BlobWriter, u64), StoreError> {
    let read_err = |e| StoreError::io(path, e);
    file.seek(SeekFrom::Start(range.start)).map_err(read_err)?;
    let mut file = file.take(range.end - range.start);
    let mut chunk = vec![0u8; WRITE_BATCH];
    let mut copied = 0;
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => return Ok((writer, copied)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        writer
            .write_all(&chunk[..n])
            .map_err(|e| StoreError::io(writer.path(), e))?;
        copied += n as u64;
    }
}

/// Counts transferred objects and bytes across concurrent tasks.
#[derive(Default)]
struct Counter {
    objects: AtomicU64,
    bytes: AtomicU64,
    /// Objects the other side had: found when asked, or when written (another process was
    /// quicker).
    present: AtomicU64,
}

impl Counter {
    /// Records one object handled: `created` false means the other side had it already.
    fn add(&self, created: bool, bytes: u64, progress: &dyn Progress) {
        if created {
            self.objects.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.present.fetch_add(1, Ordering::Relaxed);
        }
        progress.advance(bytes);
    }

    /// Records one object of `bytes` that the other side had, so was not sent.
    fn skip(&self, bytes: u64, progress: &dyn Progress) {
        self.add(false, bytes, progress);
    }

    /// The summary, given how many objects the other side had before the transfer began.
    fn transfer(&self, present: u64, problems: Vec<String>, clock: Instant) -> Transfer {
        Transfer {
            objects: self.objects.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            present: present + self.present.load(Ordering::Relaxed),
            problems,
            seconds: clock.elapsed().as_secs_f64(),
        }
    }
}

/// The object store a remote URL names and the key prefix inside it (without slashes at its
/// ends): an S3 client configured from the AWS environment, or for `file://` the directory,
/// which must exist, written with fsync ([`file_store`]). Nothing is sent yet.
pub fn connect(name: &str, url: &str) -> Result<(Arc<dyn ObjectStore>, String), RemoteError> {
    let unusable = |problem: String| RemoteError::Unusable {
        remote: name.to_string(),
        url: url.to_string(),
        problem,
    };
    match Location::parse(url)? {
        Location::S3 { bucket, prefix } => {
            let client: Arc<dyn ObjectStore> = Arc::new(s3(&bucket).map_err(unusable)?);
            Ok((client, prefix))
        }
        Location::File { dir } => {
            if !dir.is_dir() {
                return Err(unusable(format!(
                    "directory {} does not exist (create it first)",
                    dir.display()
                )));
            }
            let fs: Arc<dyn ObjectStore> =
                Arc::new(file_store(&dir).map_err(|e| unusable(describe(&e, "")))?);
            Ok((fs, String::new()))
        }
    }
}

/// The object store of a `file://` remote at `dir` (an existing directory): the local
/// filesystem with fsync on, so that an object is as durable as a blob of the local store. Each
/// put writes a staged file (`<object>#<n>`), fsyncs it, links or renames it into place and
/// fsyncs the directory; a multipart upload does the same when it completes.
pub fn file_store(dir: &Path) -> Result<LocalFileSystem, object_store::Error> {
    Ok(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true))
}

/// Each distinct blob the manifests name, with its size where one of them records it.
fn blob_sizes(manifests: &[Manifest]) -> BTreeMap<Digest, Option<u64>> {
    let mut sizes = BTreeMap::new();
    for (d, size) in manifests.iter().flat_map(Manifest::blobs) {
        let known: &mut Option<u64> = sizes.entry(d).or_default();
        *known = known.or(size);
    }
    sizes
}

/// An S3 client configured from the AWS environment, with short timeouts and few retries so
/// that a dead endpoint is reported in seconds, not minutes.
fn s3(bucket: &str) -> Result<object_store::aws::AmazonS3, String> {
    let has = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    let sources = [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ];
    if !sources.iter().any(|v| has(v)) {
        return Err("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT, AWS_ALLOW_HTTP=true for a local server)".into());
    }
    AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        })
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            "5s",
        )
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "120s")
        .build()
        .map_err(|e| describe(&e, bucket))
}

/// One line saying what went wrong and what to check.
fn describe(e: &object_store::Error, bucket: &str) -> String {
    let mut chain = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let all = chain.join(" | ");
    let code = all
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string());
    let endpoint = std::env::var("AWS_ENDPOINT").unwrap_or_else(|_| "AWS S3".into());
    if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || all.contains("403 Forbidden")
        || all.contains("401 Unauthorized")
    {
        format!(
            "access denied ({}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            code.unwrap_or_else(|| "403".into())
        )
    } else if code.as_deref() == Some("NoSuchBucket") {
        format!("bucket `{bucket}` does not exist on {endpoint}")
    } else if all.contains("error sending request") || all.contains("timed out") {
        let root = chain.last().cloned().unwrap_or_default();
        format!("cannot reach {endpoint}: {root} (check AWS_ENDPOINT and that the server is up)")
    } else {
        let root = chain
            .last()
            .map(|r| r.replace('\n', " "))
            .unwrap_or_default();
        let root: String = root.chars().take(300).collect();
        match code {
            Some(c) => format!("{c}: {root}"),
            None => root,
        }
    }
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A test hook: when `UINFO_TEST_PUSH_HOOK` is `POINT:COMMAND` and a push reaches `POINT`
/// (`before-manifests`: its blobs are on the remote, its manifests not yet written), the push
/// runs `sh -c COMMAND` and waits for it, so a test can interleave, say, a remote gc at that
/// moment without relying on timing.
fn push_hook(point: &str) {
    let Ok(hook) = std::env::var("UINFO_TEST_PUSH_HOOK") else {
        return;
    };
    if let Some(command) = hook.strip_prefix(point).and_then(|h| h.strip_prefix(':')) {
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status();
    }
}

mod gc;
mod uploads;
mod verify;
pub use gc::{GcPolicy, RemoteGc};
pub use verify::RemoteVerify;
