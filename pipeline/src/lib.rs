//! The uinfo pipeline: experiment files, the DAG of nodes, cache keys and planning, the local
//! executor, sharing through remotes, and the operations behind each `uinfo` command.
//!
//! Depends on `stages` (the science), `reports` and `artifacts` (the store); nothing depends on it.

pub mod check;
pub mod device;
pub mod error;
pub mod exec;
pub mod experiment;
pub mod fetch;
pub mod graph;
pub mod maintain;
pub mod ops;
pub mod plan;
pub mod record;
pub mod remotes;
pub mod resources;
pub mod runner;
pub mod select;
pub mod stage;
pub mod transfer;
