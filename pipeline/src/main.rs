//! `uinfo`: the command line. Parses arguments, calls `pipeline::ops`, prints results.
//! Exit codes: 0 success, 1 a node failed, 2 bad usage or bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use pipeline::device::{self, Device};
use pipeline::error::UsageError;
use pipeline::exec::slurm::SlurmOptions;
use pipeline::exec::{Options, RunRemote};
use pipeline::experiment::{self, Experiment, ExperimentError};
use pipeline::ops;
use pipeline::remotes;
use pipeline::runner::Context;
use pipeline::select::Selector;
use pipeline::stage::Stage;
use pipeline::transfer::{self, Shared, TransferBar};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// uinfo: how usable information in a network's layers evolves during training.
#[derive(Parser)]
#[command(name = "uinfo", version, about, long_about = None)]
struct Cli {
    /// The store (default `.uinfo` in the working directory).
    #[arg(long, global = true, env = "UINFO_STORE", default_value = ".uinfo")]
    store: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// The folder holding datasets that are read rather than generated (CIFAR): it contains
    /// `cifar-10-batches-bin/` or `cifar-100-binary/`, or their `.tar.gz` archives.
    #[arg(long, global = true, env = "UINFO_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Where training and extraction run, for every stage: cpu, cuda (GPU 0) or cuda:N. Without
    /// it, the experiment file's `train.device` and `extract.device` apply, then the
    /// environment variable UINFO_DEVICE, then cpu. Results on cpu and cuda have different keys.
    #[arg(long, global = true, value_name = "DEVICE", value_parser = Device::parse)]
    device: Option<Device>,
    #[command(subcommand)]
    command: Command,
}

/// Which part of the DAG a command applies to.
#[derive(clap::Args, Clone, Default)]
struct Select {
    /// Only nodes of this stage (repeatable): dataset, init, train, extract, probe, analyze, report.
    #[arg(long = "stage", value_name = "STAGE")]
    stages: Vec<String>,
    /// Only nodes of runs matching these parameter values, e.g. `batch=32` or `batch=32,seed=0` (repeatable).
    #[arg(long = "run", value_name = "VALUES")]
    runs: Vec<String>,
    /// Only nodes whose name contains this text (repeatable).
    #[arg(long = "node", value_name = "TEXT")]
    names: Vec<String>,
}

impl Select {
    fn selector(&self) -> Result<Selector> {
        let stages = self
            .stages
            .iter()
            .map(|s| {
                Stage::parse(s).ok_or_else(|| {
                    UsageError(format!("unknown stage `{s}` (dataset, init, train, extract, probe, analyze, report)"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Selector {
            stages,
            runs: self.runs.clone(),
            names: self.names.clone(),
        })
    }
}

/// Which blobs of the results a remote provides are brought here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FetchWhat {
    /// Only those read here (and the final outputs).
    Needed,
    /// Every blob.
    All,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment (built-in name or TOML file; default `checkerboard`), computing only what is missing or stale.
    Run {
        /// Built-in name or path to a TOML file.
        experiment: Option<String>,
        /// Nodes computed at once (default: the number of cores); as many more may be writing
        /// their outputs meanwhile.
        #[arg(short = 'j', long, value_parser = at_least_one)]
        jobs: Option<usize>,
        /// No per-node progress.
        #[arg(short, long)]
        quiet: bool,
        /// Take each node's result from this remote when it has it, instead of computing it:
        /// its manifest now, its blobs when a node here reads them (the final tables, report
        /// and figures always).
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
        /// Send each node computed here to the remote (with --remote).
        #[arg(long, requires = "remote")]
        push: bool,
        /// `needed`: fetch blobs only when read here; `all`: every blob of what the remote provides.
        #[arg(long, value_enum, default_value = "needed", value_name = "WHAT")]
        fetch: FetchWhat,
        #[command(flatten)]
        select: Select,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Run one job's nodes from their frozen specification in the store (what Slurm jobs run).
    Exec {
        /// The job specification's digest.
        spec: String,
        /// The object store that holds the specification and the parents' outputs, and
        /// receives the results (when compute nodes do not share the driver's store).
        #[arg(long, value_name = "URL")]
        remote_url: Option<String>,
    },
    /// Manage remotes: object stores (s3://BUCKET/PREFIX, file:///PATH) that share results.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Send an experiment's results (default: everything in the store) to a remote, those it lacks.
    Push {
        /// Built-in name or path to a TOML file (default: every result in the store).
        experiment: Option<String>,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Fetch an experiment's results (default: everything on the remote) from a remote, those
    /// the store lacks: every manifest, and the blobs of the final tables, report and figures
    /// (the rest when something here reads them, or with --fetch all, or those of the nodes
    /// --stage, --run and --node name).
    Pull {
        /// Built-in name or path to a TOML file (default: everything on the remote).
        experiment: Option<String>,
        #[command(flatten)]
        transfer: TransferArgs,
        /// `needed`: blobs of the final outputs (and of the selected nodes); `all`: every blob.
        #[arg(long, value_enum, default_value = "needed", value_name = "WHAT")]
        fetch: FetchWhat,
        #[command(flatten)]
        select: Select,
    },
    /// Dry run: each node cached or to run, and why.
    Status {
        /// Built-in name or path to a TOML file.
        experiment: Option<String>,
        /// List cached nodes too.
        #[arg(long)]
        all: bool,
        /// Also ask this remote which results it has (what `run --remote` would fetch).
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
        #[command(flatten)]
        select: Select,
    },
    /// Why a node would run: what changed against the last run, its inputs and parameters.
    Why {
        /// Node name (or a unique part of it).
        node: String,
        /// Built-in name or path to a TOML file.
        #[arg(short, long, default_value = "checkerboard")]
        experiment: String,
    },
    /// Print the DAG.
    Dag {
        /// Built-in name or path to a TOML file.
        experiment: Option<String>,
        /// text, dot or mermaid.
        #[arg(long, default_value = "text")]
        format: String,
        #[command(flatten)]
        select: Select,
    },
    /// Show a node (by name) or a key (by hex prefix): provenance and outputs.
    Show {
        /// Node name or key prefix.
        query: String,
    },
    /// List the built-in experiments.
    Experiments,
    /// Write an editable copy of a built-in experiment.
    Init {
        /// Built-in name.
        name: String,
        /// Where to write it (default `NAME.toml`).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Re-hash every blob and check every manifest; exit 1 if anything is corrupt or missing.
    /// The selectors (--stage, --run, --node) choose which nodes --recompute reruns.
    Verify {
        /// Quarantine corrupt blobs and drop the results that need them (the next run recomputes
        /// them). With --remote: remove the remote's damaged blobs and manifests, and the
        /// manifests that name a damaged or missing blob (a later push restores them).
        #[arg(long)]
        repair: bool,
        /// Check this remote instead of the store: every manifest parses, and the blobs it names
        /// are there with the recorded size.
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
        /// With --remote: also download and re-hash every blob.
        #[arg(long, requires = "remote")]
        deep: bool,
        /// Also rerun cached nodes and report any whose output digest differs: every selected
        /// node, or a sample of N of them chosen by key.
        #[arg(long, value_name = "N", num_args = 0..=1)]
        recompute: Option<Option<usize>>,
        /// Threads for --recompute (default: the number of cores).
        #[arg(short = 'j', long, value_parser = at_least_one)]
        jobs: Option<usize>,
        #[command(flatten)]
        select: Select,
    },
    /// Delete what no recorded experiment reaches.
    Gc {
        /// Only report what would be deleted and how many bytes.
        #[arg(long)]
        dry_run: bool,
        /// Remove this experiment from the roots first (repeatable).
        #[arg(long, value_name = "EXPERIMENT")]
        forget: Vec<String>,
        /// Collect this remote instead of the store: remove what no push record younger than
        /// --retention (or pinned with --keep-record) and no manifest younger than --grace
        /// reaches. Needs write rights on the remote.
        #[arg(long, value_name = "NAME", conflicts_with = "forget")]
        remote: Option<String>,
        /// With --remote: push records younger than this are roots.
        #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration, requires = "remote")]
        retention: std::time::Duration,
        /// With --remote: objects younger than this are never removed (and such manifests are
        /// roots: a push in flight has written them).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration, requires = "remote")]
        grace: std::time::Duration,
        /// With --remote: keep this push record (digest or prefix) as a root (repeatable).
        #[arg(long, value_name = "DIGEST", requires = "remote")]
        keep_record: Vec<String>,
        /// Measure ages against this time (RFC 3339) instead of now (for tests).
        #[arg(long, hide = true, value_parser = humantime::parse_rfc3339, requires = "remote")]
        now: Option<std::time::SystemTime>,
    },
    /// Keep a node's result through `gc` even when no experiment reaches it.
    Pin {
        /// Node name or key prefix.
        query: String,
        /// Remove the pin instead.
        #[arg(long)]
        remove: bool,
    },
    /// Check a device against the CPU: a forward pass and a training step per network (fc,
    /// allcnn, resnet18), determinism by digest, and with --speed-batch ResNet-18 training speed.
    /// Exit 1 when a check fails, 2 when the device cannot be used.
    CheckDevice {
        /// Time ResNet-18 training at this batch size.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        speed_batch: Option<usize>,
    },
    /// Copy an experiment's tables and report into a folder.
    Export {
        /// Experiment name.
        name: String,
        /// Destination folder.
        dir: PathBuf,
    },
}

/// How `uinfo run` uses Slurm.
#[derive(clap::Args)]
struct SlurmArgs {
    /// Where nodes run: `local` (worker threads here) or `slurm` (one sbatch job per node, or
    /// per run's chain with --group run).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    executor: String,
    /// Slurm: `run` sends each run's chain of train segments, extracts and probes as one job;
    /// `node` sends one job per node.
    #[arg(long, default_value = "run", value_parser = ["run", "node"])]
    group: String,
    /// Slurm: jobs in flight at most.
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    max_jobs: usize,
    /// Slurm: on Ctrl-C, leave the submitted jobs running (a later run adopts them) instead of
    /// cancelling them.
    #[arg(long)]
    detach: bool,
    /// Slurm: the uinfo binary as compute nodes see it (default: this binary's path).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Slurm: the folder for job logs (default: `slurm/` in the store).
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
}

impl SlurmArgs {
    /// The Slurm options of a run, or None for the local executor.
    fn options(&self, cli: &Cli, exp: &Experiment) -> Result<Option<SlurmOptions>> {
        if self.executor != "slurm" {
            return Ok(None);
        }
        let store = std::path::absolute(&cli.store)?;
        Ok(Some(SlurmOptions {
            binary: match &self.binary {
                Some(b) => b.clone(),
                None => std::env::current_exe()?,
            },
            logs: match &self.logs {
                Some(l) => std::path::absolute(l)?,
                None => store.join("slurm"),
            },
            data: match &cli.data {
                Some(d) => Some(std::path::absolute(d)?),
                None => None,
            },
            store,
            max_jobs: self.max_jobs,
            group: self.group == "run",
            detach: self.detach,
            resources: exp.resources.clone(),
            poll: std::time::Duration::from_millis(500),
        }))
    }
}

/// `uinfo remote ...`.
#[derive(Subcommand)]
enum RemoteCommand {
    /// Add (or change) a remote. S3 credentials and endpoint come from the AWS environment
    /// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT, AWS_REGION, AWS_ALLOW_HTTP).
    Add {
        /// Its name, e.g. `lab`.
        name: String,
        /// s3://BUCKET/PREFIX or file:///PATH.
        url: String,
    },
    /// List the remotes.
    List,
    /// Remove a remote (nothing on it is deleted).
    Remove {
        /// Its name.
        name: String,
    },
}

/// Options of `push` and `pull`.
#[derive(clap::Args)]
struct TransferArgs {
    /// The remote (default: the only one configured).
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Objects transferred at once.
    #[arg(short = 'j', long, default_value_t = artifacts::remote::DEFAULT_JOBS, value_parser = at_least_one)]
    jobs: usize,
    /// No progress display.
    #[arg(short, long)]
    quiet: bool,
}

/// Prints what a push or pull did; exit 1 when something could not be transferred.
fn report_transfer(verb: &str, s: &Shared, json: bool) -> ExitCode {
    let t = &s.transfer;
    if json {
        print_json(s);
    } else {
        for p in &t.problems {
            println!("error: {p}");
        }
        let secs = t.seconds.max(1e-9);
        println!(
            "{verb} {} objects ({}) {} `{}` in {:.1} s: {:.1} MB/s, {:.0} objects/s; {} already there",
            t.objects,
            indicatif::HumanBytes(t.bytes),
            if verb == "pushed" { "to" } else { "from" },
            s.remote,
            t.seconds,
            t.bytes as f64 / 1e6 / secs,
            t.objects as f64 / secs,
            t.present
        );
        if let Some(record) = &s.record {
            println!("recorded the push as {}...", record.short());
        }
        if s.unavailable > 0 {
            let why = if verb == "pushed" {
                "not computed here"
            } else {
                "not on the remote"
            };
            println!("{} nodes of the experiment are {why}", s.unavailable);
        }
    }
    ExitCode::from(if t.problems.is_empty() { 0 } else { 1 })
}

/// The remote named by `--remote`, if any, checked; a remote that cannot be used is a warning
/// and `None` (the command goes on locally).
fn connect(store: &artifacts::Store, name: Option<&str>, push: bool) -> Result<Option<RunRemote>> {
    let Some(name) = name else { return Ok(None) };
    let (remote, warning) = RunRemote::connect(store, name, push)?;
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    Ok(remote)
}

/// A count of at least 1 (`-j 0` would run nothing).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Where a run's nodes read their data: `--data` / `UINFO_DATA`, else the folder the
/// experiment file names.
fn context(cli: &Cli, exp: &Experiment) -> Context {
    Context::new(
        cli.data
            .clone()
            .or_else(|| exp.runs.iter().find_map(|r| r.data_dir.clone())),
    )
}

/// The number of cores, the default for `-j`.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Reads an experiment (default: the built-in `checkerboard`), settles its devices and finds
/// the data its datasets read, so that every node's key can be computed.
fn load(cli: &Cli, arg: Option<&str>) -> Result<Experiment> {
    let mut exp = experiment::load(arg.unwrap_or("checkerboard"))?;
    let env = match std::env::var(device::ENV) {
        Ok(v) if !v.is_empty() => {
            Some(Device::parse(&v).map_err(|e| UsageError(format!("{}: {e}", device::ENV)))?)
        }
        _ => None,
    };
    experiment::choose_devices(&mut exp, cli.device, env);
    experiment::locate_data(&mut exp, cli.data.as_deref())?;
    Ok(exp)
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    // SAFETY: restoring the default disposition of a signal at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<ExperimentError>().is_some();
            eprintln!("error: {e:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Exec { spec, remote_url } => {
            let spec: artifacts::Digest = spec
                .parse()
                .map_err(|e| UsageError(format!("`{spec}` is not a digest: {e}")))?;
            let ctx = Context::new(cli.data.clone());
            let (store, remote) = match remote_url {
                Some(url) => (
                    ops::open_store(&cli.store)?,
                    Some(artifacts::remote::Remote::open("job", url)?),
                ),
                None => (
                    ops::open_store_if_exists(&cli.store)?.ok_or_else(|| {
                        UsageError(format!("no store at {}", cli.store.display()))
                    })?,
                    None,
                ),
            };
            let ok = pipeline::exec::slurm::run_job(&store, &spec, remote.as_ref(), &ctx)?;
            Ok(ExitCode::from(if ok { 0 } else { 1 }))
        }
        Command::CheckDevice { speed_batch } => {
            let device = cli.device.unwrap_or(Device::Cuda(0));
            let ctx = Context::new(None);
            ctx.gpus
                .backend(device)
                .map_err(|e| UsageError(format!("{e:#}")))?;
            let c = pipeline::check::check_device(device, &ctx, *speed_batch)?;
            if cli.json {
                print_json(&c);
            } else {
                println!("{} (domain {}) against the CPU:", c.device, c.domain);
                let at = |t: &str| {
                    if t.is_empty() {
                        "-".to_string()
                    } else {
                        t.to_string()
                    }
                };
                for a in &c.agreement {
                    println!(
                        "  {:<9} forward {:.1e} ({}), step {:.1e} ({}): {}",
                        a.arch,
                        a.forward,
                        at(&a.forward_tensor),
                        a.step,
                        at(&a.step_tensor),
                        if a.ok { "ok" } else { "TOO FAR" }
                    );
                }
                for d in &c.determinism {
                    let same = if d.identical {
                        "identical"
                    } else {
                        "DIFFERENT"
                    };
                    println!("  {}: {same}", d.what);
                }
                if let Some(s) = &c.speed {
                    println!(
                        "  {} training at batch {}: {:.1} images/s",
                        s.arch, s.batch, s.images_per_second
                    );
                }
            }
            Ok(ExitCode::from(if c.passed() { 0 } else { 1 }))
        }
        Command::Run {
            experiment,
            jobs,
            quiet,
            remote,
            push,
            fetch,
            select,
            slurm,
        } => {
            let exp = load(cli, experiment.as_deref())?;
            let slurm = slurm.options(cli, &exp)?;
            let selector = select.selector()?;
            let store = ops::open_store(&cli.store)?;
            let remote_name = remote.as_deref();
            let remote = connect(&store, remote_name, *push)?;
            let clock = Instant::now();
            let ctx = context(cli, &exp);
            let opts = Options {
                jobs: jobs.unwrap_or_else(cores),
                quiet: *quiet || cli.json,
                remote: remote.as_ref(),
                fetch_all: *fetch == FetchWhat::All,
                down: remote_name.filter(|_| remote.is_none()),
                ctx: &ctx,
                slurm: slurm.as_ref(),
            };
            let mut s = ops::run(&exp, &store, &selector, opts)?;
            match remote.as_ref().map(|r| r.record(&store, &exp.name)) {
                Some(Ok(record)) => s.record = record,
                Some(Err(warning)) => eprintln!("{warning}"),
                None => {}
            }
            if cli.json {
                print_json(&s);
            } else {
                if s.computed == 0 && s.fetched > 0 && s.failed.is_empty() {
                    println!(
                        "{}: computed nothing, fetched {} nodes from the remote, {} cached ({:.1} s)",
                        s.experiment,
                        s.fetched,
                        s.cached + s.cut_off,
                        clock.elapsed().as_secs_f64()
                    );
                } else if s.computed == 0 && s.failed.is_empty() {
                    println!(
                        "nothing to do: all {} nodes of {} are cached",
                        s.cached + s.cut_off,
                        s.experiment
                    );
                } else {
                    println!(
                        "{}: computed {} nodes, {} fetched, {} cached, {} cut off early, {} failed, {} skipped ({:.1} s)",
                        s.experiment,
                        s.computed,
                        s.fetched,
                        s.cached,
                        s.cut_off,
                        s.failed.len(),
                        s.skipped,
                        clock.elapsed().as_secs_f64()
                    );
                }
                for (node, e) in &s.failed {
                    println!("failed: {node}: {e}");
                }
                for (run, status) in &s.diverged {
                    println!(
                        "warning: run {run} {status}; it is left out of the summary and claims"
                    );
                }
                if let Some(dir) = &s.outputs {
                    println!("tables: {}", dir.display());
                    for f in s
                        .files
                        .iter()
                        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
                    {
                        println!("  {}", f.display());
                    }
                    let figures = s
                        .files
                        .iter()
                        .filter(|f| f.parent().is_some_and(|p| p.ends_with("figures")))
                        .count();
                    if figures > 0 {
                        println!(
                            "figures: {} ({figures} files)",
                            dir.join("figures").display()
                        );
                    }
                    if let Some(html) = s.files.iter().find(|f| f.ends_with("report.html")) {
                        println!("report: {}", html.display());
                    }
                }
            }
            Ok(ExitCode::from(if s.failed.is_empty() { 0 } else { 1 }))
        }
        Command::Remote(command) => {
            let store = ops::open_store(&cli.store)?;
            match command {
                RemoteCommand::Add { name, url } => {
                    remotes::add_remote(&store, name, url)?;
                    println!("added remote {name}: {url}");
                }
                RemoteCommand::Remove { name } => {
                    remotes::remove_remote(&store, name)?;
                    println!("removed remote {name}");
                }
                RemoteCommand::List => {
                    let remotes = remotes::remotes(&store)?;
                    if cli.json {
                        print_json(&remotes);
                    } else {
                        for (name, url) in remotes {
                            println!("{name}\t{url}");
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Push {
            experiment,
            transfer,
        }
        | Command::Pull {
            experiment,
            transfer,
            ..
        } => {
            let pushing = matches!(cli.command, Command::Push { .. });
            let selector = match &cli.command {
                Command::Pull { select, .. } => select.selector()?,
                _ => Selector::default(),
            };
            let bytes = match &cli.command {
                Command::Pull {
                    fetch: FetchWhat::All,
                    ..
                } => transfer::Bytes::All,
                _ if !selector.is_empty() => transfer::Bytes::Selected(&selector),
                _ => transfer::Bytes::Needed,
            };
            let exp = experiment
                .as_deref()
                .map(|e| load(cli, Some(e)))
                .transpose()?;
            let store = ops::open_store(&cli.store)?;
            let _in_use = store.lock_use()?;
            let remote =
                remotes::open_remote(&store, transfer.remote.as_deref(), Some(transfer.jobs))?;
            let verb = if pushing { "push" } else { "pull" };
            let bar = TransferBar::new(verb, transfer.quiet || cli.json);
            let shared = if pushing {
                transfer::push(exp.as_ref(), &store, &remote, &bar)
            } else {
                transfer::pull(exp.as_ref(), &store, &remote, bytes, &bar)
            };
            bar.finish();
            Ok(report_transfer(
                if pushing { "pushed" } else { "pulled" },
                &shared?,
                cli.json,
            ))
        }
        Command::Status {
            experiment,
            all,
            remote,
            select,
        } => {
            let exp = load(cli, experiment.as_deref())?;
            let selector = select.selector()?;
            let store = match remote {
                Some(_) => Some(ops::open_store(&cli.store)?),
                None => ops::open_store_if_exists(&cli.store)?,
            };
            let remote = match &store {
                Some(store) => connect(store, remote.as_deref(), false)?,
                None => None,
            };
            let asked = remote.as_ref().filter(|r| !r.is_off());
            let (graph, _, lines) =
                ops::status(&exp, store.as_ref(), asked.map(RunRemote::remote))?;
            let lines: Vec<_> = lines
                .into_iter()
                .enumerate()
                .filter(|(i, _)| selector.matches(&graph, *i))
                .map(|(_, l)| l)
                .collect();
            if cli.json {
                print_json(&lines);
                return Ok(ExitCode::SUCCESS);
            }
            let count = |state: &str| lines.iter().filter(|l| l.state == state).count();
            let listed = |l: &&ops::NodeStatus| match l.state {
                "cached" => *all,
                "remote" => *all || remote.is_some(),
                _ => true,
            };
            for l in lines.iter().filter(listed) {
                let on = match l.device.as_str() {
                    "cpu" => String::new(),
                    gpu => format!(" [{gpu}]"),
                };
                match l.state {
                    "cached" => println!("cached  {}{on}", l.node),
                    "remote" => println!("remote  {}{on}: {}", l.node, l.reason),
                    _ => println!("run     {}{on}: {}", l.node, l.reason),
                }
            }
            let fetch = match count("remote") {
                0 if remote.is_none() => String::new(),
                n => format!(", {n} on remotes"),
            };
            println!(
                "{}: {} nodes, {} cached{fetch}, {} to run",
                exp.name,
                lines.len(),
                count("cached"),
                count("run")
            );
            let names: std::collections::BTreeSet<&str> =
                lines.iter().map(|l| l.node.as_str()).collect();
            for (job, state, nodes) in store
                .as_ref()
                .and_then(pipeline::exec::slurm::queued)
                .unwrap_or_default()
            {
                let ours: Vec<&String> = nodes
                    .iter()
                    .filter(|n| names.contains(n.as_str()))
                    .collect();
                if !ours.is_empty() {
                    let list: Vec<&str> = ours.iter().map(|s| s.as_str()).collect();
                    println!("slurm job {job} {state}: {}", list.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Why { node, experiment } => {
            let exp = load(cli, Some(experiment))?;
            let store = ops::open_store_if_exists(&cli.store)?;
            print!("{}", ops::why(&exp, store.as_ref(), node)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dag {
            experiment,
            format,
            select,
        } => {
            let exp = experiment::load(experiment.as_deref().unwrap_or("checkerboard"))?;
            let graph = pipeline::graph::build(&exp);
            let selector = select.selector()?;
            if cli.json {
                let nodes: Vec<_> = graph
                    .nodes
                    .iter()
                    .filter(|n| selector.matches(&graph, n.id))
                    .map(|n| {
                        serde_json::json!({
                            "id": n.id, "name": n.name, "stage": n.stage.name(), "params": n.params,
                            "parents": graph.parents(n.id).iter().map(|&p| graph.nodes[p].name.clone()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&nodes);
            } else {
                print!("{}", ops::dag(&graph, format, &selector)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { query } => {
            let store = ops::open_store_if_exists(&cli.store)?
                .ok_or_else(|| UsageError(format!("no store at {}", cli.store.display())))?;
            let shown = ops::show(&store, query)?;
            if cli.json {
                print_json(&shown);
            } else {
                let m = &shown.manifest;
                let p = &m.provenance;
                println!(
                    "{}\n  stage: {} (version {})\n  key: {}",
                    p.node, m.stage, m.stage_version, m.key
                );
                println!(
                    "  computed on {} (pid {}), {} -> {} ({:.2} s), uinfo {}, {}",
                    p.host, p.pid, p.started, p.ended, p.seconds, p.uinfo_version, p.domain
                );
                println!("  inputs:");
                for (k, d) in &m.inputs {
                    println!("    {k}: {d}");
                }
                match (shown.held.as_str(), &shown.problem) {
                    ("here", _) => println!("  outputs:"),
                    (held, Some(why)) => println!("  outputs ({held}, not fetched: {why}):"),
                    (held, None) => println!("  outputs ({held}):"),
                }
                for (k, path) in &shown.files {
                    println!("    {k}: {}", path.display());
                }
                println!("  params: {}", m.params);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Experiments => {
            if cli.json {
                let list: Vec<_> = experiment::BUILTINS
                    .iter()
                    .map(|(n, d, _)| serde_json::json!({"name": n, "description": d}))
                    .collect();
                print_json(&list);
            } else {
                for (n, d, _) in experiment::BUILTINS {
                    println!("{n:<24} {d}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { name, output } => {
            let path = ops::init(name, output.as_deref())?;
            println!(
                "wrote {} (run it with `uinfo run {}`)",
                path.display(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            repair,
            remote: Some(name),
            deep,
            recompute,
            jobs,
            select,
        } => {
            let store = ops::open_store_if_exists(&cli.store)?
                .ok_or_else(|| UsageError(format!("no store at {}", cli.store.display())))?;
            if recompute.is_some() || !select.selector()?.is_empty() {
                return Err(UsageError(
                    "--recompute, --stage, --run and --node apply to the store, not to --remote"
                        .into(),
                )
                .into());
            }
            let remote = pipeline::remotes::open_remote(&store, Some(name), *jobs)?;
            let r = remote.verify(*deep, *repair)?;
            if cli.json {
                print_json(&r);
            } else {
                for line in r.corrupt.iter().chain(&r.missing).chain(&r.bad_manifests) {
                    println!("{line}");
                }
                for x in &r.removed {
                    println!("removed {x}");
                }
                println!(
                    "remote `{name}`: {} blobs ({} re-hashed), {} manifests checked: {} corrupt, {} missing, {} unreadable manifests{}",
                    r.blobs,
                    r.hashed,
                    r.manifests,
                    r.corrupt.len(),
                    r.missing.len(),
                    r.bad_manifests.len(),
                    if *repair { format!(", {} objects removed", r.removed.len()) } else { String::new() }
                );
            }
            Ok(ExitCode::from(if r.ok(*repair) { 0 } else { 1 }))
        }
        Command::Verify {
            repair,
            remote: None,
            recompute,
            jobs,
            select,
            ..
        } => {
            let store = ops::open_store_if_exists(&cli.store)?
                .ok_or_else(|| UsageError(format!("no store at {}", cli.store.display())))?;
            if recompute.is_none() && !select.selector()?.is_empty() {
                return Err(UsageError(
                    "--stage, --run and --node choose the nodes of --recompute; add --recompute"
                        .into(),
                )
                .into());
            }
            let recompute = pipeline::maintain::Recompute {
                enabled: recompute.is_some(),
                sample: recompute.flatten(),
                selector: select.selector()?,
                jobs: jobs.unwrap_or_else(cores),
                ctx: Context::new(cli.data.clone()),
            };
            let r = pipeline::maintain::verify(&store, *repair, &recompute)?;
            if cli.json {
                print_json(&r);
            } else {
                for d in &r.corrupt {
                    println!("corrupt blob {d}");
                }
                for m in r.missing.iter().chain(&r.bad_manifests) {
                    println!("missing or unreadable: {m}");
                }
                for x in &r.repaired {
                    println!("repaired: {x}");
                }
                for x in &r.recomputed {
                    if x.differing.is_empty() {
                        println!("recomputed {}: identical", x.node);
                    } else {
                        println!(
                            "recomputed {}: DIFFERS in {}",
                            x.node,
                            x.differing.join(", ")
                        );
                    }
                }
                println!(
                    "{} blobs, {} manifests checked: {} corrupt, {} missing, {} unreadable manifests, {} results held on remotes{}",
                    r.blobs,
                    r.manifests,
                    r.corrupt.len(),
                    r.missing.len(),
                    r.bad_manifests.len(),
                    r.on_remote,
                    if *repair { format!(", {} repairs", r.repaired.len()) } else { String::new() }
                );
            }
            Ok(ExitCode::from(if r.ok(*repair) { 0 } else { 1 }))
        }
        Command::Gc {
            dry_run,
            remote: Some(name),
            retention,
            grace,
            keep_record,
            now,
            ..
        } => {
            let store = ops::open_store(&cli.store)?;
            let remote = pipeline::remotes::open_remote(&store, Some(name), None)?;
            let policy = artifacts::remote::GcPolicy {
                retention: *retention,
                grace: *grace,
                pins: keep_record.clone(),
                now: now.unwrap_or_else(std::time::SystemTime::now),
                dry_run: *dry_run,
            };
            let r = remote.gc(&policy)?;
            if cli.json {
                print_json(&r);
            } else {
                for (key, size) in &r.removed {
                    println!(
                        "{} {key} ({size} bytes)",
                        if *dry_run { "would remove" } else { "removed" }
                    );
                }
                for key in &r.uploads {
                    println!(
                        "{} the unfinished upload of {key}",
                        if *dry_run { "would abort" } else { "aborted" }
                    );
                }
                println!(
                    "remote `{name}`: {} {} objects ({:.1} MB) and {} unfinished uploads; {} of {} push records are roots; {} unreached objects and {} uploads younger than the grace period kept",
                    if *dry_run { "would remove" } else { "removed" },
                    r.removed.len(),
                    r.bytes as f64 / 1e6,
                    r.uploads.len(),
                    r.live_records,
                    r.records,
                    r.young,
                    r.young_uploads
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc {
            dry_run, forget, ..
        } => {
            let store = ops::open_store(&cli.store)?;
            let r = pipeline::maintain::gc(&store, *dry_run, forget)?;
            if cli.json {
                print_json(&r);
            } else {
                let verb = if r.dry_run { "would delete" } else { "deleted" };
                println!(
                    "{verb} {} blobs ({:.1} MB) and {} manifests; {} pinned nodes kept; {} kept blobs are on remotes; roots: {}",
                    r.blobs,
                    r.bytes as f64 / 1e6,
                    r.manifests,
                    r.pinned,
                    r.on_remote,
                    if r.roots.is_empty() {
                        "none".to_string()
                    } else {
                        r.roots.join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pin { query, remove } => {
            let store = ops::open_store(&cli.store)?;
            let key = pipeline::maintain::pin(&store, query, !remove)?;
            println!("{} {key}", if *remove { "unpinned" } else { "pinned" });
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { name, dir } => {
            let store = ops::open_store_if_exists(&cli.store)?
                .ok_or_else(|| UsageError(format!("no store at {}", cli.store.display())))?;
            let files = ops::export(&store, name, Path::new(dir))?;
            if cli.json {
                print_json(&files);
            } else {
                for f in files {
                    println!("{}", f.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
