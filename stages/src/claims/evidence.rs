//! What the claim checkers read: the experiment's configurations, which labels the task makes
//! relevant and irrelevant, and the curves of the last probed layer.

use crate::analysis::ParamValue;
use crate::series::{Curve, Series};

/// One configuration (a run's settings without its seed).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigInfo {
    /// Its name, e.g. `batch=32`.
    pub name: String,
    /// lr / batch of its last phase: the SGD noise scale that orders regimes for C2 and C3.
    pub noise_scale: f64,
    /// The swept parameters and their values.
    pub params: Vec<(String, ParamValue)>,
    /// The most bits any decoder can read about the relevant label, for C1.
    pub ceiling_bits: f64,
}

/// What the task says the claims are about.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskClaims {
    /// The label the network is trained on (`direction`; `coarse` for image tasks).
    pub relevant: String,
    /// The semantically meaningful label the output does not need (`color`;
    /// `fine_beyond_coarse` for image tasks).
    pub irrelevant: String,
    /// Whether this is an image task (C5 applies; C2 is C5's checkerboard counterpart).
    pub image: bool,
    /// C1: the fraction of the ceiling the final relevant bits must reach.
    pub c1_fraction: f64,
}

/// Everything the checkers read.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The configurations, in order.
    pub configs: Vec<ConfigInfo>,
    /// Labels and thresholds of the task.
    pub task: TaskClaims,
    /// The run parameter that varies an initial phase of training (for C4), if any.
    pub perturb_axis: Option<String>,
    /// Every measured curve.
    pub series: Series,
}

impl Evidence {
    /// The curve of `label` in `config` at the last probed layer, read by the preferred decoder;
    /// the reason when there is none.
    pub fn curve(&self, config: &str, label: &str) -> Result<Curve, String> {
        let (Some((layer, name)), Some(decoder)) = (
            self.series.last_layer(config),
            self.series.preferred_decoder(),
        ) else {
            return Err(format!("{config} has no probe measurements"));
        };
        self.series
            .find(config, layer, label, &decoder)
            .ok_or_else(|| format!("no measurements of `{label}` at {name} in {config}"))
    }

    /// Where the claims look, in words: `hidden3 (linear decoder)`; each network's last probed
    /// layer when configurations differ in their networks.
    pub fn place(&self) -> String {
        let mut layers: Vec<String> = self
            .configs
            .iter()
            .filter_map(|c| self.series.last_layer(&c.name).map(|l| l.1))
            .collect();
        layers.sort();
        layers.dedup();
        let decoder = self.series.preferred_decoder().unwrap_or_default();
        match layers.as_slice() {
            [] => "no probed layer".into(),
            [one] => format!("{one} ({decoder} decoder)"),
            several => format!("{} ({decoder} decoder)", several.join(" / ")),
        }
    }

    /// The noisiest and the quietest configuration (highest and lowest lr / batch of the last
    /// phase); the reason when all configurations end in one regime.
    pub fn regimes(&self) -> Result<(&ConfigInfo, &ConfigInfo), String> {
        let noisiest =
            self.configs
                .iter()
                .reduce(|a, b| if b.noise_scale > a.noise_scale { b } else { a });
        let quietest =
            self.configs
                .iter()
                .reduce(|a, b| if b.noise_scale < a.noise_scale { b } else { a });
        match (noisiest, quietest) {
            (Some(n), Some(q)) if n.noise_scale > q.noise_scale => Ok((n, q)),
            _ => Err("every configuration ends with the same lr / batch".into()),
        }
    }
}
