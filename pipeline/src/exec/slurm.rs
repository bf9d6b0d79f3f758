//! The Slurm executor: each node, or each run's chain of nodes (grouping), goes to `sbatch` as a
//! job running `uinfo exec SPEC` as soon as its parents outside the job are done. Jobs carry the
//! store's id and their specification's digest in `--comment`: what adoption (a later driver
//! finding this store's jobs still queued or running) and cancellation match on, so they never
//! touch another store's or user's jobs. Resources come from the experiment's
//! `[resources.<stage>]` and never enter a key.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use artifacts::remote::{Fetch, Remote};
use artifacts::{Digest, Manifest, Store};

use super::progress::Progress;
use super::spec::{freeze, thaw, JobSpec, NodeSpec, Source};
use super::{Done, Executor, Finished, Outcome, RunRemote};
use crate::error::UsageError;
use crate::graph::{Graph, NodeId};
use crate::plan::{key, Plan, State};
use crate::resources::Resources;
use crate::runner::Inputs;
use crate::stage::Stage;

/// How a run uses Slurm.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// The `uinfo` binary as compute nodes see it.
    pub binary: PathBuf,
    /// The store as compute nodes see it (absolute).
    pub store: PathBuf,
    /// The data folder, passed on to jobs.
    pub data: Option<PathBuf>,
    /// Where job logs go (`<id>.out`).
    pub logs: PathBuf,
    /// Jobs in flight at most.
    pub max_jobs: usize,
    /// One job per run's chain (train segments, extracts, probes) instead of one per node.
    pub group: bool,
    /// Leave the jobs running on Ctrl-C.
    pub detach: bool,
    /// Resources by stage.
    pub resources: BTreeMap<Stage, Resources>,
    /// Seconds between polls of the queue.
    pub poll: Duration,
}

/// Set by SIGINT or SIGTERM while a Slurm run waits.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// One job: the nodes it runs and where it is.
struct Job {
    id: String,
    spec: Digest,
    nodes: Vec<NodeId>,
    specs: Vec<(Digest, NodeSpec)>,
    adopted: bool,
    retried: bool,
}

/// The Slurm executor of one run.
pub struct Slurm<'a> {
    graph: &'a Graph,
    store: &'a Store,
    opts: &'a SlurmOptions,
    progress: &'a Progress,
    remote: Option<&'a RunRemote>,
    store_id: String,
    selected: Vec<bool>,
    manifests: Vec<Option<Manifest>>,
    started: Vec<bool>,
    job_of: HashMap<NodeId, usize>,
    jobs: Vec<Job>,
    active: Vec<usize>,
    backlog: VecDeque<usize>,
    early: HashMap<NodeId, Result<Finished, String>>,
    ready: VecDeque<Done>,
    interrupted: bool,
}

impl<'a> Slurm<'a> {
    /// Checks that Slurm answers, and adopts this store's jobs that are still queued or running
    /// for nodes of this run.
    pub(super) fn new(
        graph: &'a Graph,
        plan: &Plan,
        to_run: &[NodeId],
        store: &'a Store,
        opts: &'a SlurmOptions,
        remote: Option<&'a RunRemote>,
        progress: &'a Progress,
    ) -> Result<Slurm<'a>> {
        check_slurm()?;
        std::fs::create_dir_all(&opts.logs)
            .with_context(|| format!("cannot create the log folder {}", opts.logs.display()))?;
        let mut selected = vec![false; graph.nodes.len()];
        to_run.iter().for_each(|&i| selected[i] = true);
        let mut s = Slurm {
            graph,
            store,
            opts,
            progress,
            remote,
            store_id: store_id(store)?,
            selected,
            manifests: plan
                .states
                .iter()
                .map(|st| match st {
                    State::Cached(m) => Some((**m).clone()),
                    State::ToRun(_) => None,
                })
                .collect(),
            started: vec![false; graph.nodes.len()],
            job_of: HashMap::new(),
            jobs: Vec::new(),
            active: Vec::new(),
            backlog: VecDeque::new(),
            early: HashMap::new(),
            ready: VecDeque::new(),
            interrupted: false,
        };
        s.adopt()?;
        INTERRUPTED.store(false, Ordering::SeqCst);
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                libc::SIGINT,
                on_interrupt as *const () as libc::sighandler_t,
            );
            libc::signal(
                libc::SIGTERM,
                on_interrupt as *const () as libc::sighandler_t,
            );
        }
        Ok(s)
    }

    /// Takes over this store's queued and running jobs whose nodes this run needs.
    fn adopt(&mut self) -> Result<()> {
        for (id, spec, state) in store_jobs(&self.store_id)? {
            let Ok(job) = thaw::<JobSpec>(self.store, &spec) else {
                continue;
            };
            let mut nodes = Vec::new();
            let mut specs = Vec::new();
            for d in &job.nodes {
                let ns: NodeSpec = thaw(self.store, d)?;
                let Some(node) = self.graph.find(&ns.name) else {
                    continue;
                };
                if ns.describes(node)
                    && self.selected[node.id]
                    && !self.job_of.contains_key(&node.id)
                {
                    nodes.push(node.id);
                    specs.push((*d, ns));
                }
            }
            if nodes.is_empty() {
                continue;
            }
            let what = self.describe(&nodes);
            self.progress
                .note(&format!("adopted job {id} ({state}): {what}"));
            let j = self.jobs.len();
            for &n in &nodes {
                self.job_of.insert(n, j);
            }
            self.jobs.push(Job {
                id,
                spec,
                nodes,
                specs,
                adopted: true,
                retried: false,
            });
            self.active.push(j);
        }
        Ok(())
    }

    /// A job's nodes in a few words: the first one's name, and how many more.
    fn describe(&self, nodes: &[NodeId]) -> String {
        let first = &self.graph.nodes[nodes[0]].name;
        match nodes.len() {
            1 => first.clone(),
            n => format!("{first} and {} more", n - 1),
        }
    }

    /// The node with the rest of its run: the selected nodes of the same run not yet in a job
    /// all of whose parents are done or in the group, in graph order (parents first).
    fn group(&self, id: NodeId) -> Vec<NodeId> {
        let run = &self.graph.nodes[id].run;
        if !self.opts.group || run.is_none() {
            return vec![id];
        }
        let mut group: Vec<NodeId> = Vec::new();
        for n in &self.graph.nodes {
            let joins = n.id == id
                || (n.run == *run
                    && self.selected[n.id]
                    && self.manifests[n.id].is_none()
                    && !self.job_of.contains_key(&n.id)
                    && n.inputs
                        .iter()
                        .all(|i| group.contains(&i.node) || self.manifests[i.node].is_some()));
            if joins {
                group.push(n.id);
            }
        }
        group
    }

    /// Freezes a group's nodes and submits them as one job (or queues it behind `max_jobs`).
    fn submit_group(&mut self, nodes: Vec<NodeId>) -> Result<()> {
        let mut digests: HashMap<NodeId, Digest> = HashMap::new();
        let mut specs = Vec::new();
        for &n in &nodes {
            let node = &self.graph.nodes[n];
            let mut inputs = BTreeMap::new();
            for i in &node.inputs {
                let source = match digests.get(&i.node) {
                    Some(spec) => Source::Parent {
                        spec: *spec,
                        output: i.output.to_string(),
                    },
                    None => {
                        let m = self.manifests[i.node]
                            .as_ref()
                            .ok_or_else(|| anyhow!("parent of {} is not done", node.name))?;
                        Source::Digest(*m.outputs.get(i.output).ok_or_else(|| {
                            anyhow!("{} has no output {}", m.provenance.node, i.output)
                        })?)
                    }
                };
                inputs.insert(i.name.clone(), source);
            }
            let spec = NodeSpec::of(node, inputs);
            let d = freeze(self.store, &spec)?;
            digests.insert(n, d);
            specs.push((d, spec));
        }
        let job = JobSpec {
            store: self.store_id.clone(),
            nodes: nodes.iter().map(|n| digests[n]).collect(),
        };
        let spec = freeze(self.store, &job)?;
        if let Some(r) = self.remote {
            // The job's machine sees only the remote: send it the specifications and the
            // parents' outputs the job reads.
            let mut blobs = vec![spec];
            for (d, ns) in &specs {
                blobs.push(*d);
                blobs.extend(ns.inputs.values().filter_map(|s| match s {
                    Source::Digest(d) => Some(*d),
                    Source::Parent { .. } => None,
                }));
            }
            r.remote().push_blobs(self.store, &blobs)?;
        }
        let j = self.jobs.len();
        for &n in &nodes {
            self.job_of.insert(n, j);
        }
        self.jobs.push(Job {
            id: String::new(),
            spec,
            nodes,
            specs,
            adopted: false,
            retried: false,
        });
        self.backlog.push_back(j);
        self.submit_backlog();
        Ok(())
    }

    /// Submits queued jobs while fewer than `max_jobs` are in flight.
    fn submit_backlog(&mut self) {
        while self.active.len() < self.opts.max_jobs.max(1) {
            let Some(j) = self.backlog.pop_front() else {
                break;
            };
            match self.sbatch(j) {
                Ok(id) => {
                    let what = self.describe(&self.jobs[j].nodes);
                    self.progress.note(&format!("submitted job {id}: {what}"));
                    self.jobs[j].id = id;
                    self.active.push(j);
                }
                Err(e) => self.fail_job(j, &format!("{e:#}")),
            }
        }
    }

    /// `sbatch` for job `j`; returns the job id.
    fn sbatch(&self, j: usize) -> Result<String> {
        let job = &self.jobs[j];
        let first = &self.graph.nodes[job.nodes[0]];
        let name = match (&first.run, job.nodes.len()) {
            (Some(run), n) if n > 1 => format!("uinfo:{run}"),
            _ => format!("uinfo:{}", first.name),
        };
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            format!("--job-name={name}"),
            format!("--comment=uinfo:{}:{}", self.store_id, job.spec.hex()),
            format!("--output={}", self.opts.logs.join("%j.out").display()),
            "--export=ALL".into(),
        ];
        args.extend(self.resources(&job.nodes));
        let mut command = vec![shell_quote(&self.opts.binary.to_string_lossy())];
        command.push("--store".into());
        command.push(match self.remote {
            Some(_) => "\"$S\"".into(),
            None => shell_quote(&self.opts.store.to_string_lossy()),
        });
        if let Some(d) = &self.opts.data {
            command.push("--data".into());
            command.push(shell_quote(&d.to_string_lossy()));
        }
        command.push("exec".into());
        if let Some(r) = self.remote {
            command.push("--remote-url".into());
            command.push(shell_quote(r.remote().url()));
        }
        command.push(job.spec.hex());
        let script = match self.remote {
            // A scratch store on the compute node, removed when the job ends.
            Some(_) => format!(
                "S=\"${{TMPDIR:-/tmp}}/uinfo-job-$SLURM_JOB_ID\"; {}; rc=$?; rm -rf \"$S\"; exit $rc",
                command.join(" ")
            ),
            None => format!("exec {}", command.join(" ")),
        };
        args.push(format!("--wrap={script}"));
        let out = Command::new("sbatch")
            .args(&args)
            .output()
            .context("cannot run sbatch")?;
        if !out.status.success() {
            bail!("sbatch failed: {}", first_line(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if id.is_empty() {
            bail!("sbatch printed no job id");
        }
        Ok(id)
    }

    /// The sbatch arguments of a job's resources: the largest setting among its nodes' stages,
    /// and a GPU for nodes on a cuda device unless `gpus` says otherwise.
    fn resources(&self, nodes: &[NodeId]) -> Vec<String> {
        let mut merged = Resources::default();
        let mut gpu = false;
        for &n in nodes {
            let node = &self.graph.nodes[n];
            gpu |= node.device.is_gpu();
            let Some(r) = self.opts.resources.get(&node.stage) else {
                continue;
            };
            merged.cpus = merged.cpus.max(r.cpus);
            merged.gpus = merged.gpus.max(r.gpus);
            if bigger(r.mem.as_deref(), merged.mem.as_deref(), memory_mib) {
                merged.mem.clone_from(&r.mem);
            }
            if bigger(r.time.as_deref(), merged.time.as_deref(), minutes) {
                merged.time.clone_from(&r.time);
            }
            for (mine, theirs) in [
                (&mut merged.partition, &r.partition),
                (&mut merged.account, &r.account),
                (&mut merged.qos, &r.qos),
            ] {
                if mine.is_none() {
                    mine.clone_from(theirs);
                }
            }
            for e in &r.extra {
                if !merged.extra.contains(e) {
                    merged.extra.push(e.clone());
                }
            }
        }
        let mut args = Vec::new();
        if let Some(c) = merged.cpus {
            args.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = merged.mem {
            args.push(format!("--mem={m}"));
        }
        if let Some(t) = merged.time {
            args.push(format!("--time={t}"));
        }
        match merged.gpus {
            Some(0) => {}
            Some(g) => args.push(format!("--gres=gpu:{g}")),
            None if gpu => args.push("--gres=gpu:1".into()),
            None => {}
        }
        for (flag, v) in [
            ("partition", merged.partition),
            ("account", merged.account),
            ("qos", merged.qos),
        ] {
            if let Some(v) = v {
                args.push(format!("--{flag}={v}"));
            }
        }
        args.extend(merged.extra);
        args
    }

    /// Reports every node of job `j` as failed with `why`.
    fn fail_job(&mut self, j: usize, why: &str) {
        for n in self.jobs[j].nodes.clone() {
            self.deliver(n, Err(why.to_string()));
        }
    }

    /// Hands a node's result to the scheduler now if it has started it, else when it does.
    fn deliver(&mut self, n: NodeId, result: Result<Finished, String>) {
        if let Ok(f) = &result {
            self.manifests[n] = Some(f.manifest.clone());
        }
        if self.started[n] {
            self.ready.push_back((n, result));
        } else {
            self.early.insert(n, result);
        }
    }

    /// Polls the queue once and collects the results of jobs that ended.
    fn poll(&mut self) -> Result<()> {
        if self.active.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = self
            .active
            .iter()
            .map(|&j| self.jobs[j].id.as_str())
            .collect();
        let states = job_states(&ids)?;
        let ended: Vec<(usize, String)> = self
            .active
            .iter()
            .filter_map(|&j| {
                let state = states
                    .get(&self.jobs[j].id)
                    .cloned()
                    .unwrap_or_else(|| "GONE".into());
                (!ACTIVE.contains(&state.as_str())).then_some((j, state))
            })
            .collect();
        for (j, state) in ended {
            self.active.retain(|&a| a != j);
            self.collect(j, &state)?;
        }
        self.submit_backlog();
        Ok(())
    }

    /// Reads the results of an ended job from the store; a preempted job is resubmitted once.
    fn collect(&mut self, j: usize, state: &str) -> Result<()> {
        let state = if state == "GONE" {
            final_state(&self.jobs[j].id)
        } else {
            state.to_string()
        };
        let log = self.opts.logs.join(format!("{}.out", self.jobs[j].id));
        let nodes = self.jobs[j].nodes.clone();
        let results = self.results(j)?;
        let mut missing = Vec::new();
        for (n, result) in nodes.iter().zip(results) {
            match result {
                Some(m) => {
                    let seconds = m.provenance.seconds;
                    self.deliver(
                        *n,
                        Ok(Finished {
                            manifest: m,
                            outcome: Outcome::Computed,
                            seconds,
                            notes: Vec::new(),
                        }),
                    );
                }
                None => missing.push(*n),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if state == "PREEMPTED" && !self.jobs[j].retried && !self.interrupted {
            self.progress.note(&format!(
                "job {} was preempted; submitting it again",
                self.jobs[j].id
            ));
            self.jobs[j].retried = true;
            self.backlog.push_back(j);
            return Ok(());
        }
        let why = failure(&state, &log, &self.jobs[j].id);
        for n in missing {
            let name = &self.graph.nodes[n].name;
            let message = node_error(&log, name).unwrap_or_else(|| why.clone());
            let message = if message == why {
                message
            } else {
                format!("{message} ({why})")
            };
            self.deliver(n, Err(message));
        }
        Ok(())
    }

    /// The results of a job's nodes, in its order: from the store, or fetched from the remote
    /// the job pushed them to.
    fn results(&self, j: usize) -> Result<Vec<Option<Manifest>>> {
        let mut by_spec: HashMap<Digest, Manifest> = HashMap::new();
        let mut out = Vec::new();
        for (d, spec) in &self.jobs[j].specs {
            let mut inputs = Inputs::new();
            for (name, source) in &spec.inputs {
                let digest = match source {
                    Source::Digest(d) => Some(*d),
                    Source::Parent { spec, output } => by_spec
                        .get(spec)
                        .and_then(|m| m.outputs.get(output))
                        .copied(),
                };
                if let Some(digest) = digest {
                    inputs.insert(name.clone(), digest);
                }
            }
            if inputs.len() < spec.inputs.len() {
                out.push(None);
                continue;
            }
            let k = key(&spec.node(), &inputs);
            let mut m = self
                .store
                .get_manifest(&k)?
                .filter(|m| self.store.is_complete(m));
            if let (None, Some(r)) = (&m, self.remote) {
                if let Fetch::Fetched(f) = r.remote().fetch(self.store, &k)? {
                    m = Some(*f);
                }
            }
            if let Some(m) = &m {
                by_spec.insert(*d, m.clone());
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Cancels the jobs this run submitted (not adopted ones) unless detached, and fails their
    /// nodes.
    fn interrupt(&mut self) {
        self.interrupted = true;
        let mine: Vec<String> = self
            .active
            .iter()
            .filter(|&&j| !self.jobs[j].adopted)
            .map(|&j| self.jobs[j].id.clone())
            .collect();
        let why = if self.opts.detach {
            self.progress.note(&format!(
                "interrupted: {} jobs left running (--detach); a later run adopts them",
                self.active.len()
            ));
            "interrupted; its job is left running"
        } else {
            if !mine.is_empty() {
                let _ = Command::new("scancel").args(&mine).status();
            }
            self.progress
                .note(&format!("interrupted: cancelled {} jobs", mine.len()));
            "interrupted; its job was cancelled"
        };
        for j in std::mem::take(&mut self.active) {
            self.fail_job(j, why);
        }
        for j in std::mem::take(&mut self.backlog) {
            self.fail_job(j, "interrupted before its job was submitted");
        }
    }

    /// Ends the run's use of Slurm: restores the default signal handling.
    pub(super) fn finish(&mut self) {
        // SAFETY: restoring default dispositions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

impl Executor for Slurm<'_> {
    fn start(&mut self, id: NodeId, _inputs: Inputs) {
        self.started[id] = true;
        if let Some(r) = self.early.remove(&id) {
            self.ready.push_back((id, r));
            return;
        }
        if self.job_of.contains_key(&id) {
            return;
        }
        if self.interrupted {
            self.ready.push_back((id, Err("interrupted".into())));
            return;
        }
        let group = self.group(id);
        if let Err(e) = self.submit_group(group) {
            self.ready.push_back((id, Err(format!("{e:#}"))));
        }
    }

    fn wait(&mut self) -> Done {
        loop {
            if let Some(d) = self.ready.pop_front() {
                return d;
            }
            if INTERRUPTED.load(Ordering::SeqCst) && !self.interrupted {
                self.interrupt();
                continue;
            }
            if let Err(e) = self.poll() {
                let why = format!("{e:#}");
                for j in std::mem::take(&mut self.active) {
                    self.fail_job(j, &why);
                }
                continue;
            }
            if self.ready.is_empty() {
                std::thread::sleep(self.opts.poll);
            }
        }
    }
}

/// Runs a job's nodes in order (what `uinfo exec` does on a compute node): each one whose
/// parents have results, with [`super::run_node`]; a node that fails or panics is reported on
/// stderr as `failed: NODE: message` and its dependants in the job are skipped. With a remote
/// (the store is not shared), the specifications and parents' outputs come from it and each
/// result goes to it. Returns whether every node has its result.
pub fn run_job(
    store: &Store,
    spec: &Digest,
    remote: Option<&Remote>,
    ctx: &crate::runner::Context,
) -> Result<bool> {
    let _in_use = store.lock_use()?;
    if let Some(r) = remote {
        r.fetch_blobs(store, &[*spec])?;
    }
    let job: JobSpec = thaw(store, spec)?;
    if let Some(r) = remote {
        r.fetch_blobs(store, &job.nodes)?;
    }
    let mut all = true;
    for d in &job.nodes {
        let spec: NodeSpec = thaw(store, d)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_frozen(store, &spec, remote, ctx)
        }))
        .unwrap_or_else(|p| Err(anyhow!("panicked: {}", super::panic_message(p.as_ref()))));
        match result {
            Ok(Some(f)) => {
                let what = match f.outcome {
                    Outcome::Computed => "computed",
                    Outcome::Fetched => "fetched",
                    _ => "found",
                };
                println!("{what}: {} ({:.2} s)", spec.name, f.seconds);
            }
            Ok(None) => {
                eprintln!("skipped: {}: a parent in this job has no result", spec.name);
                all = false;
            }
            Err(e) => {
                eprintln!("failed: {}: {e:#}", spec.name);
                all = false;
            }
        }
    }
    Ok(all)
}

/// One frozen node of a job: its inputs, then its result from the remote or computed (and
/// pushed); `None` when a parent in the job has no result.
fn run_frozen(
    store: &Store,
    spec: &NodeSpec,
    remote: Option<&Remote>,
    ctx: &crate::runner::Context,
) -> Result<Option<Finished>> {
    if let Some(r) = remote {
        let parents: Vec<Digest> = spec
            .inputs
            .values()
            .filter_map(|s| match s {
                Source::Digest(d) => Some(*d),
                Source::Parent { .. } => None,
            })
            .collect();
        r.fetch_blobs(store, &parents)?;
    }
    let Some(inputs) = spec.resolve(store)? else {
        return Ok(None);
    };
    let node = spec.node();
    if let Some(r) = remote {
        let clock = Instant::now();
        if let Fetch::Fetched(m) = r.fetch(store, &key(&node, &inputs))? {
            return Ok(Some(Finished {
                manifest: *m,
                outcome: Outcome::Fetched,
                seconds: clock.elapsed().as_secs_f64(),
                notes: Vec::new(),
            }));
        }
    }
    let f = super::run_node(&node, &inputs, store, None, ctx, None)?;
    if let Some(r) = remote {
        r.push_one(store, &f.manifest, &Default::default())?;
    }
    Ok(Some(f))
}

/// Slurm states of a job that has not ended.
const ACTIVE: [&str; 9] = [
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
];

/// Whether Slurm is here and its controller answers; exit 2 otherwise.
pub fn check_slurm() -> Result<()> {
    let out = Command::new("sinfo")
        .args(["-h", "-o", "%P"])
        .output()
        .map_err(|e| {
            UsageError(format!(
                "--executor slurm: cannot run sinfo ({e}); is Slurm installed on this machine?"
            ))
        })?;
    if !out.status.success() {
        return Err(UsageError(format!(
            "--executor slurm: the Slurm controller does not answer: {}",
            first_line(&out.stderr)
        ))
        .into());
    }
    Ok(())
}

/// The store's id, made on first use: what this store's jobs carry in their comment.
pub fn store_id(store: &Store) -> Result<String> {
    if let Some(id) = store.read_json::<String>("id.json")? {
        return Ok(id);
    }
    let seed = format!(
        "{}:{}:{:?}",
        store.root().display(),
        std::process::id(),
        std::time::SystemTime::now()
    );
    let id = Digest::of(seed.as_bytes()).hex()[..16].to_string();
    store.write_json("id.json", &id)?;
    Ok(store.read_json::<String>("id.json")?.unwrap_or(id))
}

/// This store's jobs in the queue: (job id, job specification, state).
pub fn store_jobs(store_id: &str) -> Result<Vec<(String, Digest, String)>> {
    let out = Command::new("squeue")
        .args(["-h", "--me", "-o", "%i|%k|%T"])
        .output()
        .context("cannot run squeue")?;
    if !out.status.success() {
        bail!("squeue failed: {}", first_line(&out.stderr));
    }
    let prefix = format!("uinfo:{store_id}:");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('|');
            let (id, comment, state) = (parts.next()?, parts.next()?, parts.next()?);
            let spec = comment.strip_prefix(&prefix)?.parse().ok()?;
            Some((id.to_string(), spec, state.to_string()))
        })
        .collect())
}

/// The queued and running jobs of a store with the names of their nodes, for `uinfo status`;
/// `None` when there is no Slurm here.
pub fn queued(store: &Store) -> Option<Vec<(String, String, Vec<String>)>> {
    let id = store.read_json::<String>("id.json").ok()??;
    let jobs = store_jobs(&id).ok()?;
    Some(
        jobs.into_iter()
            .map(|(job, spec, state)| {
                let names = thaw::<JobSpec>(store, &spec)
                    .map(|j| {
                        j.nodes
                            .iter()
                            .filter_map(|d| thaw::<NodeSpec>(store, d).ok().map(|n| n.name))
                            .collect()
                    })
                    .unwrap_or_default();
                (job, state, names)
            })
            .collect(),
    )
}

/// States of the given jobs as the controller knows them (finished ones included while it
/// remembers them).
fn job_states(ids: &[&str]) -> Result<HashMap<String, String>> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T", "-j", &ids.join(",")])
        .output()
        .context("cannot run squeue")?;
    // squeue fails when every id is unknown to the controller (purged): all are gone.
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        bail!(
            "the Slurm controller does not answer: {}",
            first_line(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.split_once('|')?;
            Some((id.to_string(), state.trim().to_string()))
        })
        .collect())
}

/// The final state of a job the controller has forgotten, from accounting if there is any.
fn final_state(id: &str) -> String {
    Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "State", "-j", id])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "UNKNOWN".into())
}

/// Why a job's nodes have no result, in words.
fn failure(state: &str, log: &Path, id: &str) -> String {
    let what = match state {
        "OUT_OF_MEMORY" => "ran out of memory".to_string(),
        "TIMEOUT" => "ran out of time".to_string(),
        "CANCELLED" => "was cancelled".to_string(),
        "PREEMPTED" => "was preempted twice".to_string(),
        "NODE_FAIL" => "lost its node".to_string(),
        "COMPLETED" => "ended without a result for it".to_string(),
        other => format!("ended {other}"),
    };
    format!(
        "Slurm job {id} {what} (state {state}); log {}",
        log.display()
    )
}

/// The error `uinfo exec` printed for a node in a job's log, if any.
fn node_error(log: &Path, node: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let prefix = format!("failed: {node}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_string()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `a` is a larger setting than `b` by `measure` (unset is smallest; unparsable keeps
/// the first).
fn bigger(a: Option<&str>, b: Option<&str>, measure: fn(&str) -> Option<f64>) -> bool {
    match (a, b) {
        (Some(_), None) => true,
        (Some(a), Some(b)) => match (measure(a), measure(b)) {
            (Some(x), Some(y)) => x > y,
            _ => false,
        },
        _ => false,
    }
}

/// Memory as sbatch takes it (`500`, `500M`, `4G`, `1T`; megabytes by default) in MiB.
pub fn memory_mib(s: &str) -> Option<f64> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = number.parse().ok()?;
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" => 1.0,
        "K" | "KB" => 1.0 / 1024.0,
        "G" | "GB" => 1024.0,
        "T" | "TB" => 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * scale)
}

/// A time limit as sbatch takes it (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) in minutes.
pub fn minutes(s: &str) -> Option<f64> {
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<f64>().ok()?, r),
        None => (0.0, s),
    };
    let parts: Vec<f64> = rest
        .split(':')
        .map(|p| p.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let (h, m, sec) = match (s.contains('-'), parts.as_slice()) {
        (false, [m]) => (0.0, *m, 0.0),
        (false, [m, sec]) => (0.0, *m, *sec),
        (true, [h]) => (*h, 0.0, 0.0),
        (true, [h, m]) => (*h, *m, 0.0),
        (_, [h, m, sec]) => (*h, *m, *sec),
        _ => return None,
    };
    Some(days * 1440.0 + h * 60.0 + m + sec / 60.0)
}
