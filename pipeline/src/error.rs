//! The error that makes the CLI exit with code 2.

/// Bad input or usage (a bad flag, an unreadable store, an unknown remote): the CLI exits with
/// code 2. Errors of experiment files are [`crate::experiment::ExperimentError`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
