//! Devices: where a node's arithmetic runs (`cpu`, `cuda`, `cuda:N`), the numerics domain each
//! implies (SPEC §2.2: the device kind and dtype, never the index), and the backends that run
//! models on them, opened once per process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use stages::model::Backend;

/// Where a node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// The CPU (portable kernels).
    #[default]
    Cpu,
    /// NVIDIA GPU number N.
    Cuda(usize),
}

/// The environment variable that sets the device of stages the experiment file leaves unset.
pub const ENV: &str = "UINFO_DEVICE";

impl Device {
    /// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`.
    pub fn parse(s: &str) -> Result<Device, String> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device `{s}` (cpu, cuda or cuda:N)")),
        }
    }

    /// The numerics domain of what runs here: part of the key of device-dependent stages.
    pub fn domain(self) -> &'static str {
        match self {
            Device::Cpu => stages::DOMAIN,
            Device::Cuda(_) => gpu::DOMAIN,
        }
    }

    /// The device that computes in `domain` (GPU 0 for `cuda-f32`), for recomputing a result.
    pub fn for_domain(domain: &str) -> Option<Device> {
        [Device::Cpu, Device::Cuda(0)]
            .into_iter()
            .find(|d| d.domain() == domain)
    }

    /// Whether it is a GPU.
    pub fn is_gpu(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let s = String::deserialize(d)?;
        Device::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The `cuda` backend of each GPU this process has opened (a CUDA context is costly to create).
#[derive(Default)]
pub struct Gpus {
    opened: Mutex<BTreeMap<usize, Arc<dyn Backend + Send + Sync>>>,
}

impl fmt::Debug for Gpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opened: Vec<usize> = self
            .opened
            .lock()
            .map_or(Vec::new(), |m| m.keys().copied().collect());
        write!(f, "Gpus {opened:?}")
    }
}

impl Gpus {
    /// The backend that runs models on `device`. A GPU that cannot be used (no driver, no such
    /// device, a binary built without the `cuda` feature) is an error saying which.
    pub fn backend(&self, device: Device) -> Result<Arc<dyn Backend + Send + Sync>> {
        let index = match device {
            Device::Cpu => return Ok(Arc::new(stages::model::Cpu)),
            Device::Cuda(n) => n,
        };
        let mut opened = self.opened.lock().expect("gpu table");
        if let Some(b) = opened.get(&index) {
            return Ok(Arc::clone(b));
        }
        let b: Arc<dyn Backend + Send + Sync> = Arc::from(
            gpu::backend(index)
                .map_err(|e| anyhow::anyhow!("device {device} cannot be used: {e:#}"))?,
        );
        anyhow::ensure!(
            b.domain() == device.domain(),
            "device {device} computes in domain {}, not {}",
            b.domain(),
            device.domain()
        );
        opened.insert(index, Arc::clone(&b));
        Ok(b)
    }
}
