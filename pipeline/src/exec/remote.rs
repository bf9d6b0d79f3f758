//! The remote a run fetches each node's result from before computing it, and pushes to after.

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::Result;
use artifacts::remote::{Fetch, Remote, RemoteError};
use artifacts::{Digest, Manifest, PushRecord, Store};

use crate::error::UsageError;
use crate::graph::Graph;
use crate::remotes::open_remote;
use crate::runner::VERSION;
use crate::transfer::locate;

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
    /// Keys the remote was already asked about (not asked again when their nodes run).
    asked: Mutex<BTreeSet<Digest>>,
}

impl RunRemote {
    /// Opens and checks the remote named `name`. An unknown name or a bad URL is an error; a
    /// remote that cannot be used comes with the warning to print, turned off (the run goes on
    /// locally, and what it would have read from that remote is computed here without
    /// another warning), or is `None` when it cannot even be opened.
    pub fn connect(
        store: &Store,
        name: &str,
        push: bool,
    ) -> Result<(Option<RunRemote>, Option<String>)> {
        let remote = match open_remote(store, Some(name), None) {
            Ok(remote) => remote,
            Err(e) if e.downcast_ref::<UsageError>().is_some() => return Err(e),
            Err(e) => return Ok((None, Some(format!("warning: {e:#}; computing locally")))),
        };
        let warning = remote
            .check()
            .err()
            .map(|e| format!("warning: {e}; computing locally"));
        let run = RunRemote {
            remote,
            push,
            off: Mutex::new(warning.is_some()),
            bad: Mutex::new(BTreeSet::new()),
            reached: Mutex::new(Vec::new()),
            asked: Mutex::new(BTreeSet::new()),
        };
        Ok((Some(run), warning))
    }

    /// Looks up on the remote the results the store lacks and stores their manifests; their
    /// blobs stay there (marked as such) until something here reads them. Returns, per node,
    /// whether its result came from the remote, and a warning for each bad manifest there (or
    /// for the remote when it stops answering: the run then goes on locally).
    pub fn adopt(&self, graph: &Graph, store: &Store) -> Result<(Vec<bool>, Vec<String>)> {
        let mut adopted = vec![false; graph.nodes.len()];
        if self.is_off() {
            return Ok((adopted, Vec::new()));
        }
        let located = match locate(graph, store, &self.remote) {
            Ok(l) => l,
            Err(e) => match e.downcast::<RemoteError>() {
                Ok(e) => return Ok((adopted, self.turn_off(e).into_iter().collect())),
                Err(e) => return Err(e),
            },
        };
        lock(&self.asked).extend(located.asked);
        let mut notes = Vec::new();
        for (i, key, why) in located.problems {
            lock(&self.bad).insert(key);
            let node = &graph.nodes[i].name;
            notes.push(format!("warning: {why}; computing {node} locally"));
        }
        let mut reached = lock(&self.reached);
        for (i, found) in located.found.into_iter().enumerate() {
            if let Some((m, true)) = found {
                store.put_remote_manifest(&m, self.remote.name())?;
                adopted[i] = true;
                reached.push(m);
            }
        }
        Ok((adopted, notes))
    }

    /// Fetches the result under `key` into the store, unless the remote was already asked
    /// about it. Returns it when fetched, and a line to show when the remote had it but
    /// something was wrong, or stopped answering.
    pub fn fetch(
        &self,
        store: &Store,
        key: &Digest,
        node: &str,
    ) -> (Option<Manifest>, Option<String>) {
        if self.is_off() || !lock(&self.asked).insert(*key) {
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

    /// Whether the remote stopped answering (the run goes on without it).
    pub fn is_off(&self) -> bool {
        *lock(&self.off)
    }

    /// Stops using the remote, without a warning (the caller gave one).
    pub fn set_off(&self) {
        *lock(&self.off) = true;
    }

    /// Remembers blobs found missing or corrupt on the remote (a push replaces them).
    pub fn note_bad(&self, blobs: impl IntoIterator<Item = Digest>) {
        lock(&self.bad).extend(blobs);
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
