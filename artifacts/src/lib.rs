//! Content-addressed store of uinfo: BLAKE3 digests, immutable blobs, an action cache of
//! manifests keyed by canonical node keys, and per-key advisory locks.
//!
//! Layout of a store root (default `.uinfo/`):
//! `blobs/<2 hex>/<64 hex>`, `ac/<2 hex>/<64 hex>.json`, `tmp/`, `locks/`, `experiments/`,
//! `config.json` (remotes), `remote-blobs/` (blobs of cached results that are on a remote,
//! not here: [`Holding`]). [`remote`] copies blobs and manifests to and from object stores
//! and writes a [`PushRecord`] per push; [`counting`] counts the requests made to one.

mod canonical;
pub mod counting;
mod digest;
mod elsewhere;
mod error;
mod lock;
mod maintenance;
mod manifest;
mod push_record;
pub mod remote;
mod store;

pub use canonical::{canonical_json, canonical_key};
pub use digest::{Digest, ParseDigestError};
pub use elsewhere::Holding;
pub use error::StoreError;
pub use lock::KeyLock;
pub use maintenance::UseLock;
pub use manifest::{Manifest, Provenance};
pub use push_record::{PushRecord, WHOLE_STORE};
pub use store::{BlobWriter, Store};
