//! Content-addressed store of uinfo: BLAKE3 digests, immutable blobs, an action cache of
//! manifests keyed by canonical node keys, and per-key advisory locks.
//!
//! Layout of a store root (default `.uinfo/`):
//! `blobs/<2 hex>/<64 hex>`, `ac/<2 hex>/<64 hex>.json`, `tmp/`, `locks/`, `experiments/`,
//! `config.json` (remotes). [`remote`] copies blobs and manifests to and from object stores.

mod canonical;
mod digest;
mod error;
mod lock;
mod maintenance;
mod manifest;
pub mod remote;
mod store;

pub use canonical::{canonical_json, canonical_key};
pub use digest::{Digest, ParseDigestError};
pub use error::StoreError;
pub use lock::KeyLock;
pub use maintenance::UseLock;
pub use manifest::{Manifest, Provenance};
pub use store::{BlobWriter, Store};
