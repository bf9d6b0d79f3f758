//! Planning against real stores built by hand: cached, to run, and an unreadable cached result.

use std::collections::BTreeMap;

use artifacts::{Manifest, Provenance, Store};
use pipeline::device::Device;
use pipeline::experiment::{choose_devices, parse};
use pipeline::graph::{build, Graph};
use pipeline::plan::{key, plan, State};

fn graph() -> Graph {
    build(
        &parse(
            "[train]\nseeds = 1\nepochs = 2\ncheckpoints = [0, 1, 2]\n",
            "t.toml",
            "t",
        )
        .unwrap(),
    )
}

/// Stores a made-up result for the dataset node (its key has no inputs).
fn cache_dataset(store: &Store, g: &Graph) -> Manifest {
    let node = g.find("dataset").unwrap();
    let k = key(node, &BTreeMap::new());
    let blob = store.put_bytes(b"not really a dataset").unwrap();
    let m = Manifest {
        key: k,
        stage: "dataset".into(),
        stage_version: node.stage.version(),
        params: node.params.clone(),
        inputs: BTreeMap::new(),
        outputs: [("dataset.safetensors".to_string(), blob)].into(),
        sizes: [("dataset.safetensors".to_string(), 20)].into(),
        provenance: Provenance::now_for(&node.name, "", std::time::SystemTime::now(), "test"),
    };
    store.put_manifest(&m).unwrap();
    m
}

#[test]
fn an_empty_store_runs_every_node_with_a_reason() {
    let g = graph();
    let p = plan(&g, None, None).unwrap();
    assert_eq!(p.to_run().len(), g.nodes.len());
    for (n, s) in g.nodes.iter().zip(&p.states) {
        let State::ToRun(why) = s else {
            panic!("{} cached", n.name)
        };
        assert!(
            why.contains("new node") || why.contains("will run"),
            "{}: {why}",
            n.name
        );
    }
}

#[test]
fn a_cached_parent_gives_its_children_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let g = graph();
    let m = cache_dataset(&store, &g);
    let p = plan(&g, Some(&store), None).unwrap();
    let dataset = g.find("dataset").unwrap().id;
    assert!(matches!(&p.states[dataset], State::Cached(c) if c.key == m.key));
    assert_eq!(p.to_run().len(), g.nodes.len() - 1);
    // The init node has no inputs, so it is "new" rather than waiting for a parent.
    let init = g
        .nodes
        .iter()
        .find(|n| n.name.starts_with("init/"))
        .unwrap();
    assert!(matches!(&p.states[init.id], State::ToRun(r) if r.contains("new node")));
}

#[test]
fn an_unreadable_cached_result_is_an_error_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let g = graph();
    let m = cache_dataset(&store, &g);
    let path = store.manifest_path(&m.key);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, "{ not json").unwrap();
    let err = format!("{:#}", plan(&g, Some(&store), None).unwrap_err());
    assert!(err.contains("node dataset"), "{err}");
    assert!(err.contains("does not parse"), "{err}");
    assert!(err.contains("verify --repair"), "{err}");
}

/// The key of every node of a graph whose runs train and extract on `device`, each node given
/// the same made-up input digests, so that only the numerics domain can tell keys apart.
fn keys_on(device: Option<Device>) -> BTreeMap<String, artifacts::Digest> {
    let mut exp = parse(
        "[train]\nseeds = 1\nepochs = 2\ncheckpoints = [0, 1, 2]\n",
        "t.toml",
        "t",
    )
    .unwrap();
    choose_devices(&mut exp, device, None);
    let g = build(&exp);
    let same = artifacts::Digest::of(b"the same parent output");
    g.nodes
        .iter()
        .map(|n| {
            let inputs = n.inputs.iter().map(|i| (i.name.clone(), same)).collect();
            (n.name.clone(), key(n, &inputs))
        })
        .collect()
}

#[test]
fn the_domain_keys_device_dependent_nodes_and_never_the_gpu_number() {
    let cpu = keys_on(None);
    let cuda0 = keys_on(Some(Device::Cuda(0)));
    let cuda1 = keys_on(Some(Device::Cuda(1)));
    assert_eq!(cpu, keys_on(Some(Device::Cpu)), "unset means cpu");
    assert_eq!(cuda0, cuda1, "cuda:0 and cuda:1 give one key");
    for (name, k) in &cpu {
        let stage = name.split('/').next().unwrap();
        match stage {
            "train" | "extract" => assert_ne!(cuda0[name], *k, "{name}: cpu and cuda share a key"),
            // Decoders run on the CPU; the representations they read carry the device.
            "dataset" | "init" | "probe" | "analyze" | "report" => {
                assert_eq!(cuda0[name], *k, "{name}: a device-independent key changed")
            }
            other => panic!("unexpected stage {other}"),
        }
    }
}

#[test]
fn extraction_inside_probe_nodes_carries_its_device() {
    let mut exp = parse(
        "[train]\nseeds = 1\nepochs = 1\n[extract]\nkeep = false\ndevice = \"cuda:1\"\n",
        "t.toml",
        "t",
    )
    .unwrap();
    choose_devices(&mut exp, None, None);
    let g = build(&exp);
    let probe = g
        .nodes
        .iter()
        .find(|n| n.name.starts_with("probe/"))
        .unwrap();
    assert_eq!(probe.device, Device::Cuda(1));
    let train = g
        .nodes
        .iter()
        .find(|n| n.name.starts_with("train/"))
        .unwrap();
    assert_eq!(train.device, Device::Cpu, "train.device is unset");
}

#[test]
fn the_command_line_device_wins_over_the_file_and_the_file_over_the_environment() {
    let text = "[train]\nseeds = 1\nepochs = 1\ndevice = \"cuda\"\n";
    let devices = |cli, env| {
        let mut exp = parse(text, "t.toml", "t").unwrap();
        choose_devices(&mut exp, cli, env);
        exp.runs[0].devices
    };
    let d = devices(Some(Device::Cpu), Some(Device::Cuda(2)));
    assert_eq!((d.train, d.extract), (Some(Device::Cpu), Some(Device::Cpu)));
    let d = devices(None, Some(Device::Cuda(2)));
    assert_eq!(
        (d.train, d.extract),
        (Some(Device::Cuda(0)), Some(Device::Cuda(2)))
    );
    let d = devices(None, None);
    assert_eq!(
        (d.train, d.extract),
        (Some(Device::Cuda(0)), Some(Device::Cpu))
    );
}
