//! What a stage's Slurm jobs ask for (`[resources.<stage>]` in an experiment file).

use serde::{Deserialize, Serialize};

/// What a stage's jobs ask Slurm for (`[resources.<stage>]`). Never part of a key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs per task.
    pub cpus: Option<u32>,
    /// Memory, as sbatch takes it (`4G`, `500M`).
    pub mem: Option<String>,
    /// Time limit, as sbatch takes it (`1:00:00`, `30`).
    pub time: Option<String>,
    /// GPUs (`--gres=gpu:N`); nodes on a cuda device get 1 when unset.
    pub gpus: Option<u32>,
    /// Partition.
    pub partition: Option<String>,
    /// Account.
    pub account: Option<String>,
    /// Quality of service.
    pub qos: Option<String>,
    /// Further sbatch arguments, as given.
    #[serde(default)]
    pub extra: Vec<String>,
}
