//! The remote a run fetches each node's result from before computing it, and pushes to after.

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::Result;
use artifacts::remote::{Fetch, Remote, RemoteError};
use artifacts::{Digest, Manifest, PushRecord, Store};

use crate::error::UsageError;
use crate::remotes::open_remote;
use crate::runner::VERSION;

/// The remote a run fetches from before computing a node, and pushes to after (`--push`).
/// The first failure to reach it turns it off for the rest of the run, with one warning.
pub struct RunRemote {
    remote: Remote,
    push: bool,
    off: Mutex<bool>,
    /// Blobs (by digest) and manifests (by key) found bad on the remote; `--push` replaces them.
    bad: Mutex<BTreeSet<Digest>>,
    /// Results this run knows the remote holds: fetched from it, or pushed to it.
    reached: Mutex<Vec<Manifest>>,
}

impl RunRemote {
    /// Opens and checks the remote named `name`. An unknown name or a bad URL is an error; a
    /// remote that cannot be used gives `None` and the warning to print.
    pub fn connect(
        store: &Store,
        name: &str,
        push: bool,
    ) -> Result<(Option<RunRemote>, Option<String>)> {
        let checked = open_remote(store, Some(name), None).and_then(|remote| {
            remote.check()?;
            Ok(remote)
        });
        match checked {
            Ok(remote) => Ok((
                Some(RunRemote {
                    remote,
                    push,
                    off: Mutex::new(false),
                    bad: Mutex::new(BTreeSet::new()),
                    reached: Mutex::new(Vec::new()),
                }),
                None,
            )),
            Err(e) if e.downcast_ref::<UsageError>().is_some() => Err(e),
            Err(e) => Ok((None, Some(format!("warning: {e:#}; computing locally")))),
        }
    }

    /// Fetches the result under `key` into the store. Returns it when fetched, and a line to
    /// show when the remote had it but something was wrong, or stopped answering.
    pub fn fetch(
        &self,
        store: &Store,
        key: &Digest,
        node: &str,
    ) -> (Option<Manifest>, Option<String>) {
        if self.is_off() {
            return (None, None);
        }
        match self.remote.fetch(store, key) {
            Ok(Fetch::Fetched(m)) => {
                lock(&self.reached).push((*m).clone());
                (Some(*m), None)
            }
            Ok(Fetch::Absent) => (None, None),
            Ok(Fetch::Rejected { why, bad }) => {
                lock(&self.bad).extend(bad);
                let note = format!("warning: {why}; computing {node} locally");
                (None, Some(note))
            }
            Err(e) => (None, self.turn_off(e)),
        }
    }

    /// Sends a freshly computed result when the run pushes, replacing what was found bad on
    /// the remote; returns a line to show when it replaced something or failed.
    pub fn pushed(&self, store: &Store, m: &Manifest) -> Option<String> {
        if !self.push || self.is_off() {
            return None;
        }
        let replace = lock(&self.bad).clone();
        let pushed = self.remote.push_one(store, m, &replace);
        if pushed.is_ok() {
            lock(&self.reached).push(m.clone());
        }
        match pushed {
            Ok(replaced) if replaced.is_empty() => None,
            Ok(replaced) => {
                let what = |d: &Digest| if *d == m.key { "manifest" } else { "blob" };
                let names: Vec<String> = replaced
                    .iter()
                    .map(|d| format!("{} {}...", what(d), d.short()))
                    .collect();
                let mut bad = lock(&self.bad);
                replaced.iter().for_each(|d| {
                    bad.remove(d);
                });
                Some(format!(
                    "remote `{}`: replaced bad {} with what was computed here",
                    self.remote.name(),
                    names.join(", ")
                ))
            }
            Err(e) => self.turn_off(e),
        }
    }

    /// When the run pushes, writes its push record for `experiment` on the remote: every
    /// result the run pushed or fetched (results it found in the store are not asked about, so
    /// not named). Returns the record's digest, none when there is nothing to record, or the
    /// warning to show when it could not be written.
    pub fn record(&self, store: &Store, experiment: &str) -> Result<Option<Digest>, String> {
        let reached = lock(&self.reached);
        if !self.push || self.is_off() || reached.is_empty() {
            return Ok(None);
        }
        let record = PushRecord::new(Some(experiment), &reached, store, VERSION);
        match self.remote.put_record(&record) {
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(format!(
                "warning: {e}; the push of this run is not recorded"
            )),
        }
    }

    /// The remote itself.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    fn is_off(&self) -> bool {
        *lock(&self.off)
    }

    fn turn_off(&self, e: RemoteError) -> Option<String> {
        let mut off = lock(&self.off);
        (!std::mem::replace(&mut *off, true))
            .then(|| format!("warning: {e}; computing locally from now on"))
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
