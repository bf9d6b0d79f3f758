//! Planning against real stores built by hand: cached, to run, and an unreadable cached result.

use std::collections::BTreeMap;

use artifacts::{Manifest, Provenance, Store};
use pipeline::experiment::parse;
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
