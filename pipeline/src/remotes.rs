//! The store's remotes (SPEC §2.4): names and URLs kept in the store's `config.json`, and
//! opening one by name.

use std::collections::BTreeMap;

use anyhow::Result;
use artifacts::remote::{Location, Remote, RemoteError};
use artifacts::Store;
use serde::{Deserialize, Serialize};

use crate::error::UsageError;

/// The store's configuration file, relative to its root.
const CONFIG: &str = "config.json";

/// The store's own settings: for now, its remotes by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    remotes: BTreeMap<String, String>,
}

fn load_config(store: &Store) -> Result<Config> {
    Ok(store
        .read_json::<Config>(CONFIG)
        .map_err(|e| UsageError(e.to_string()))?
        .unwrap_or_default())
}

/// The configured remotes: name -> URL.
pub fn remotes(store: &Store) -> Result<BTreeMap<String, String>> {
    Ok(load_config(store)?.remotes)
}

/// Adds (or replaces) a remote after checking that its URL parses; no connection is made.
pub fn add_remote(store: &Store, name: &str, url: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(UsageError(format!(
            "bad remote name `{name}`: use letters, digits, '-', '_' or '.'"
        ))
        .into());
    }
    Location::parse(url).map_err(|e| UsageError(e.to_string()))?;
    let mut config = load_config(store)?;
    config.remotes.insert(name.to_string(), url.to_string());
    store.write_json(CONFIG, &config)?;
    Ok(())
}

/// Removes a remote; a usage error when there is no such remote.
pub fn remove_remote(store: &Store, name: &str) -> Result<()> {
    let mut config = load_config(store)?;
    if config.remotes.remove(name).is_none() {
        return Err(unknown_remote(name, &config));
    }
    store.write_json(CONFIG, &config)?;
    Ok(())
}

fn unknown_remote(name: &str, config: &Config) -> anyhow::Error {
    let known: Vec<&str> = config.remotes.keys().map(String::as_str).collect();
    UsageError(if known.is_empty() {
        format!(
            "no remote named `{name}`: add one with `uinfo remote add {name} s3://BUCKET/PREFIX`"
        )
    } else {
        format!("no remote named `{name}` (known: {})", known.join(", "))
    })
    .into()
}

/// Opens the remote named `name`, or the only one configured when `name` is `None`. Unknown
/// names and bad URLs are usage errors; nothing is sent yet.
pub fn open_remote(store: &Store, name: Option<&str>, jobs: Option<usize>) -> Result<Remote> {
    let config = load_config(store)?;
    let (name, url) =
        match name {
            Some(n) => match config.remotes.get(n) {
                Some(url) => (n.to_string(), url.clone()),
                None => return Err(unknown_remote(n, &config)),
            },
            None => match config.remotes.len() {
                1 => config.remotes.into_iter().next().expect("one remote"),
                0 => return Err(UsageError(
                    "no remote configured: add one with `uinfo remote add NAME s3://BUCKET/PREFIX`"
                        .into(),
                )
                .into()),
                _ => {
                    return Err(UsageError(format!(
                        "several remotes configured ({}): name one with --remote",
                        config
                            .remotes
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into())
                }
            },
        };
    let remote = Remote::open(&name, &url).map_err(|e| match e {
        RemoteError::BadUrl { .. } => anyhow::Error::from(UsageError(e.to_string())),
        e => e.into(),
    })?;
    Ok(match jobs {
        Some(j) => remote.with_jobs(j),
        None => remote,
    })
}
