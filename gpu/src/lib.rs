//! uinfo's CUDA backend: the networks of [`stages::model`] (`fc`, `allcnn`, `resnet18`) on
//! candle tensors, behind the same [`Backend`] seam as the portable CPU code, with exactly its
//! semantics (layers, batch norm, SGD, summed cross-entropy) and its PyTorch names and layouts,
//! so a checkpoint moves freely between the two. Parameters and momentum stay on the device
//! between steps; only the batch goes up and the loss and #correct come back.
//!
//! Features: `candle` builds the backend on candle's CPU device (for tests on any machine);
//! `cuda` adds CUDA devices (`scripts/cuda-build.sh` builds it without a GPU). Without them
//! [`backend`] only says how to get a CUDA build. [`check`] compares backends.

#![warn(missing_docs)]

pub mod check;
#[cfg(feature = "candle")]
mod net;

use anyhow::Result;
use stages::model::Backend;

/// The numerics domain (SPEC §2.2) of what the CUDA backend computes: f32 on a CUDA device,
/// TF32 off. It differs from `cpu-f32` because cuBLAS, candle's kernels and the device's
/// `exp`/`log` sum and round differently.
pub const DOMAIN: &str = "cuda-f32";

/// The numerics domain of [`candle_cpu`]'s models: candle's own CPU kernels, neither
/// `cpu-f32` nor `cuda-f32`.
pub const CANDLE_CPU_DOMAIN: &str = "candle-cpu-f32";

/// The CUDA backend on device `index`, with TF32 off. Errors: this build lacks the `cuda`
/// feature, or CUDA cannot open the device (its message, e.g. `CUDA_ERROR_NO_DEVICE`).
pub fn backend(index: usize) -> Result<Box<dyn Backend + Send + Sync>> {
    #[cfg(feature = "cuda")]
    {
        Ok(Box::new(net::CandleBackend::cuda(index)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        anyhow::bail!(
            "cannot use CUDA device {index}: this uinfo was built without the `cuda` feature; \
             scripts/cuda-build.sh builds one with it (dist/uinfo-cuda)"
        )
    }
}

/// The same models on candle's CPU device (domain [`CANDLE_CPU_DOMAIN`]): what the tests
/// compare with `stages::model::Cpu` on machines without a GPU.
#[cfg(feature = "candle")]
pub fn candle_cpu() -> impl Backend + Send {
    net::CandleBackend::cpu()
}

/// Whether a device error's text says the device ran out of memory (CUDA's
/// `CUDA_ERROR_OUT_OF_MEMORY`, cuBLAS's `CUBLAS_STATUS_ALLOC_FAILED`, or "out of memory").
pub fn is_out_of_memory(message: &str) -> bool {
    message.contains("OUT_OF_MEMORY")
        || message.contains("ALLOC_FAILED")
        || message.to_ascii_lowercase().contains("out of memory")
}

/// A device error as uinfo reports it: out-of-memory errors say so first.
pub fn device_error(message: &str) -> anyhow::Error {
    if is_out_of_memory(message) {
        anyhow::anyhow!("out of memory on the device: {message}")
    } else {
        anyhow::anyhow!("device error: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_named() {
        let e = device_error("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
        assert!(e.to_string().starts_with("out of memory"), "{e}");
        assert!(is_out_of_memory("CUBLAS_STATUS_ALLOC_FAILED"));
        assert!(!is_out_of_memory(
            "DriverError(CUDA_ERROR_NO_DEVICE, \"no device\")"
        ));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_the_backend_says_how_to_get_one() {
        let e = backend(0).err().expect("no CUDA in this build").to_string();
        assert!(
            e.contains("`cuda` feature") && e.contains("scripts/cuda-build.sh"),
            "{e}"
        );
    }
}
