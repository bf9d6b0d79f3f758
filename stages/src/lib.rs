//! The science of uinfo: tasks (the checkerboard, CIFAR) and their datasets, networks (`fc`,
//! `resnet18`, `allcnn`), training, representation extraction, decoders that measure usable
//! information, the analysis tables and the claims judged on them.
//!
//! Every stage is a plain function from typed inputs and parameters to typed outputs. This crate
//! knows nothing about caching, digests or the DAG; `pipeline` calls it.

pub mod analysis;
pub mod checkpoint;
pub mod claims;
pub mod data;
pub mod decoder;
pub mod extract;
pub mod info;
pub mod kernels;
pub mod math;
pub mod model;
pub mod probe;
pub mod rng;
pub mod series;
pub mod table;
pub mod task;
pub mod tensors;
pub mod train;

/// The numerics domain of this build's stages (SPEC §2.2), part of the cache key of stages whose
/// bytes depend on it: f32 on the CPU. Nothing else enters it because nothing else changes the
/// bytes: every stage computes with [`kernels`] and [`math`], whose results do not depend on
/// the CPU model, its vector instructions, the thread count or the C library (checked under
/// QEMU with other CPU models by `scripts/cpu-portability.sh`).
pub const DOMAIN: &str = "cpu-f32";
