//! The science of uinfo: the checkerboard task, networks, training, representation extraction,
//! decoders that measure usable information, and the analysis tables.
//!
//! Every stage is a plain function from typed inputs and parameters to typed outputs. This crate
//! knows nothing about caching, digests or the DAG; `pipeline` calls it.

pub mod analysis;
pub mod checkerboard;
pub mod checkpoint;
pub mod decoder;
pub mod extract;
pub mod info;
pub mod network;
pub mod probe;
pub mod rng;
pub mod table;
pub mod tensors;
pub mod train;

/// The numerics domain of this build's stages: part of the cache key of stages whose bytes depend on it.
pub const DOMAIN: &str = "cpu-f32";
