//! Errors of the store; each names the path involved.

use std::fmt;
use std::path::PathBuf;

use crate::Digest;

/// A failure of the store. `Display` is one line naming the path; the OS error, where there is
/// one, is part of that line rather than a separate `source()`, so error chains do not repeat it.
#[derive(Debug)]
pub enum StoreError {
    /// The store directory cannot be created or written: message names the path and the OS error.
    Unwritable {
        /// The directory or probe file that could not be created or written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blob whose content does not match its name.
    Corrupt {
        /// The digest the blob is named by.
        digest: Digest,
        /// Where the blob lies.
        path: PathBuf,
    },
    /// A blob that a manifest names but the store lacks.
    Missing {
        /// The digest of the absent blob.
        digest: Digest,
        /// Where the blob should be.
        path: PathBuf,
    },
    /// Any other I/O error, with the path.
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A manifest file that does not parse.
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON file other than a manifest (see [`crate::Store::read_json`]) that does not parse.
    BadJson {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl StoreError {
    /// The path the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            StoreError::Unwritable { path, .. }
            | StoreError::Corrupt { path, .. }
            | StoreError::Missing { path, .. }
            | StoreError::Io { path, .. }
            | StoreError::BadManifest { path, .. }
            | StoreError::BadJson { path, .. } => path,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unwritable { path, source } => {
                write!(f, "cannot write to store {}: {source}", path.display())
            }
            StoreError::Corrupt { digest, path } => write!(
                f,
                "blob {}... at {} is corrupt (its content does not match its name)",
                digest.short(),
                path.display()
            ),
            StoreError::Missing { digest, path } => write!(
                f,
                "blob {}... is missing from the store (expected at {})",
                digest.short(),
                path.display()
            ),
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StoreError::BadManifest { path, message } => {
                write!(f, "manifest {} does not parse: {message}", path.display())
            }
            StoreError::BadJson { path, message } => {
                write!(f, "{} does not parse: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}
