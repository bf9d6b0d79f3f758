//! Keeping a remote healthy (issue 14), on the real remotes (the loopback SeaweedFS of
//! `scripts/s3-local.sh`, and a `file://` directory): `uinfo verify --remote` finds a truncated
//! blob, a missing blob, a corrupt manifest and (with `--deep`) a blob whose bytes changed but
//! not its size, all planted by the test; `--repair` removes exactly those and the manifests
//! that name a damaged or missing blob; a later push restores them. `uinfo gc --remote` removes
//! exactly what an expired push record alone reached, and a push interleaved with it at the
//! worst moment (a test hook, not timing) loses nothing.

mod remote_support;

use std::collections::{BTreeMap, BTreeSet};

use artifacts::{Digest, Manifest, PushRecord};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use remote_support::{add_remote, clean_up, clone_source, push_with_uinfo, runtime, Kind, Target};
use serde_json::Value;
use uinfo_tests::{stderr, stdout, tiny, uinfo_bin, uinfo_env};

/// Every object under the remote's prefix, by key relative to it, with its size.
fn listing(target: &Target) -> BTreeMap<String, u64> {
    let prefix = ObjectPath::from(target.prefix.as_str());
    let metas: Vec<_> = runtime().block_on(async {
        target
            .objects
            .list(Some(&prefix))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    });
    let strip = |p: &str| match target.prefix.as_str() {
        "" => p.to_string(),
        pre => p.strip_prefix(&format!("{pre}/")).unwrap().to_string(),
    };
    metas
        .into_iter()
        .map(|m| (strip(m.location.as_ref()), m.size))
        .collect()
}

fn get(target: &Target, rel: &str) -> Vec<u8> {
    runtime().block_on(async {
        let got = target.objects.get(&target.key(rel)).await.unwrap();
        got.bytes().await.unwrap().to_vec()
    })
}

fn put(target: &Target, rel: &str, bytes: Vec<u8>) {
    runtime().block_on(async {
        target
            .objects
            .put(&target.key(rel), PutPayload::from(bytes))
            .await
            .unwrap();
    });
}

/// The remote's manifests, parsed.
fn manifests(target: &Target) -> Vec<Manifest> {
    listing(target)
        .keys()
        .filter(|k| k.starts_with("ac/"))
        .map(|k| serde_json::from_slice(&get(target, k)).unwrap())
        .collect()
}

/// `uinfo verify --remote lab ARGS --json` from `store`: exit code and report.
fn verify(
    t: &std::path::Path,
    store: &std::path::Path,
    target: &Target,
    args: &[&str],
) -> (i32, Value) {
    let mut all = vec!["verify", "--remote", "lab", "--json"];
    all.extend_from_slice(args);
    let out = uinfo_env(t, store, &all, &target.env);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), report)
}

fn lines(report: &Value, field: &str) -> Vec<String> {
    report[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn verify_finds_and_repairs_planted_damage(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "verify");
    let a = clone_source(t, "a");
    push_with_uinfo(t, a.root(), &target);
    let (code, clean) = verify(t, a.root(), &target, &["--deep"]);
    assert_eq!(code, 0, "a fresh push verifies clean: {clean}");
    let before = listing(&target);

    // Four manifests, each with an output blob no other of the four names.
    let mut ms = manifests(&target);
    ms.sort_by_key(|m| m.key.hex());
    let mut used = BTreeSet::new();
    let mut pick = Vec::new();
    for m in &ms {
        let blobs: BTreeSet<Digest> = m.outputs.values().copied().collect();
        if blobs.is_disjoint(&used) && !blobs.is_empty() {
            used.extend(blobs);
            pick.push(m.clone());
        }
        if pick.len() == 4 {
            break;
        }
    }
    let blob = |m: &Manifest| *m.outputs.values().next().unwrap();
    let (truncated, missing, changed) = (blob(&pick[0]), blob(&pick[1]), blob(&pick[2]));
    let corrupt_manifest = pick[3].key;
    let rel = |d: &Digest| format!("blobs/{}", d.hex());
    let mut bytes = get(&target, &rel(&truncated));
    bytes.pop();
    put(&target, &rel(&truncated), bytes);
    runtime().block_on(async {
        target
            .objects
            .delete(&target.key(&rel(&missing)))
            .await
            .unwrap()
    });
    let mut bytes = get(&target, &rel(&changed));
    bytes[0] ^= 1;
    put(&target, &rel(&changed), bytes);
    put(
        &target,
        &format!("ac/{}.json", corrupt_manifest.hex()),
        b"{ not json".to_vec(),
    );

    // Without --deep: the truncated blob (by its recorded size), the missing one and the
    // corrupt manifest; the flipped byte is invisible.
    let (code, report) = verify(t, a.root(), &target, &[]);
    assert_eq!(code, 1, "{report}");
    let corrupt = lines(&report, "corrupt");
    assert_eq!(corrupt.len(), 1, "{report}");
    assert!(corrupt[0].contains(&truncated.hex()), "{report}");
    let missing_lines = lines(&report, "missing");
    assert_eq!(missing_lines.len(), 1, "{report}");
    assert!(missing_lines[0].contains(&missing.hex()), "{report}");
    let bad = lines(&report, "bad_manifests");
    assert_eq!(bad.len(), 1, "{report}");
    assert!(bad[0].contains(&corrupt_manifest.hex()), "{report}");
    assert_eq!(
        listing(&target).len(),
        before.len() - 1,
        "verify alone removes nothing"
    );

    // --deep also re-hashes: the changed blob is found.
    let (code, report) = verify(t, a.root(), &target, &["--deep"]);
    assert_eq!(code, 1);
    let corrupt = lines(&report, "corrupt").join("\n");
    assert!(
        corrupt.contains(&changed.hex()) && corrupt.contains(&truncated.hex()),
        "{report}"
    );

    // --repair removes exactly the damaged objects and every manifest naming one of them.
    let damaged = [truncated, missing, changed];
    let mut want: BTreeSet<String> = [truncated, changed].iter().map(rel).collect();
    want.insert(format!("ac/{}.json", corrupt_manifest.hex()));
    for m in &ms {
        if m.outputs.values().any(|d| damaged.contains(d)) {
            want.insert(format!("ac/{}.json", m.key.hex()));
        }
    }
    let (code, report) = verify(t, a.root(), &target, &["--deep", "--repair"]);
    assert_eq!(code, 0, "{report}");
    let removed: BTreeSet<String> = lines(&report, "removed").into_iter().collect();
    assert_eq!(removed, want);
    let after = listing(&target);
    for (key, size) in &before {
        if want.contains(key) || *key == rel(&missing) {
            assert!(!after.contains_key(key), "{key} should be gone");
        } else {
            assert_eq!(after.get(key), Some(size), "{key} must be untouched");
        }
    }
    let (code, report) = verify(t, a.root(), &target, &["--deep"]);
    assert_eq!(code, 0, "after repair the remote verifies clean: {report}");

    // A push restores what was removed.
    let out = uinfo_env(t, a.root(), &["push", "tiny.toml", "-q"], &target.env);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = listing(&target);
    for (key, size) in before.iter().filter(|(k, _)| !k.starts_with("records/")) {
        assert_eq!(restored.get(key), Some(size), "{key} restored");
    }
    assert_eq!(verify(t, a.root(), &target, &["--deep"]).0, 0);
    clean_up(kind, &target);
}

#[test]
fn s3_verify_finds_and_repairs_planted_damage() {
    verify_finds_and_repairs_planted_damage(Kind::S3);
}

#[test]
fn file_verify_finds_and_repairs_planted_damage() {
    verify_finds_and_repairs_planted_damage(Kind::File);
}

/// The remote's push records, oldest first.
fn records(target: &Target) -> Vec<(String, PushRecord)> {
    let mut out: Vec<(String, PushRecord)> = listing(target)
        .keys()
        .filter(|k| k.starts_with("records/"))
        .map(|k| (k.clone(), serde_json::from_slice(&get(target, k)).unwrap()))
        .collect();
    out.sort_by(|a, b| a.1.pushed.cmp(&b.1.pushed));
    out
}

/// `uinfo gc --remote lab ARGS --json` from `store`: the keys it removed (or would remove).
fn gc(
    t: &std::path::Path,
    store: &std::path::Path,
    target: &Target,
    args: &[&str],
) -> BTreeSet<String> {
    let mut all = vec!["gc", "--remote", "lab", "--json"];
    all.extend_from_slice(args);
    let out = uinfo_env(t, store, &all, &target.env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_string())
        .collect()
}

fn millis(rfc3339: &str) -> u128 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

/// Acceptance 4, first half: store a pushes the tiny experiment, store b a variant of it (other
/// probe settings: the same dataset, training and representations, other probes and reports).
/// Measured against b's push time, with a retention shorter than the time between the pushes,
/// a's record has expired: `gc --dry-run` lists, and `gc` then removes, exactly a's record and
/// the manifests and blobs only it reached, and nothing else.
fn gc_removes_what_only_an_expired_record_reached(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "gc");
    let a = clone_source(t, "a");
    push_with_uinfo(t, a.root(), &target);
    let b = clone_source(t, "b");
    std::fs::write(t.join("tiny.toml"), tiny("", "lr = 0.02")).unwrap();
    let run = uinfo_env(t, b.root(), &["run", "tiny.toml", "-q"], &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    push_with_uinfo(t, b.root(), &target);
    let recs = records(&target);
    assert_eq!(recs.len(), 2);
    let (old, new) = (&recs[0], &recs[1]);
    let gap = millis(&new.1.pushed) - millis(&old.1.pushed);
    assert!(gap > 2, "the pushes are apart");
    let now =
        humantime::parse_rfc3339(&new.1.pushed).unwrap() + std::time::Duration::from_millis(1);
    let now = humantime::format_rfc3339_millis(now).to_string();
    let retention = format!("{}ms", gap / 2);
    let args = ["--now", &now, "--retention", &retention, "--grace", "0s"];

    let mut want: BTreeSet<String> = BTreeSet::from([old.0.clone()]);
    for m in old.1.manifests.difference(&new.1.manifests) {
        want.insert(format!("ac/{}.json", m.hex()));
    }
    for d in old.1.blobs.keys().filter(|d| !new.1.blobs.contains_key(d)) {
        want.insert(format!("blobs/{}", d.hex()));
    }
    assert!(
        want.len() > 3,
        "the variant shares some but not all objects: {want:?}"
    );
    let before = listing(&target);
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    assert_eq!(gc(t, a.root(), &target, &dry), want);
    assert_eq!(listing(&target), before, "a dry run removes nothing");
    assert_eq!(gc(t, a.root(), &target, &args), want);
    let after = listing(&target);
    for (key, size) in &before {
        if want.contains(key) {
            assert!(!after.contains_key(key), "{key} should be gone");
        } else {
            assert_eq!(after.get(key), Some(size), "{key} must stay");
        }
    }
    assert_eq!(
        verify(t, b.root(), &target, &[]).0,
        0,
        "what stays is whole"
    );
    assert!(
        gc(t, a.root(), &target, &args).is_empty(),
        "a second gc finds nothing"
    );
    clean_up(kind, &target);
}

/// Acceptance 4, second half: store a pushes the experiment; later store c pushes it again,
/// and at the worst moment (c has found every blob already there and not yet written its
/// manifests; the test hook `UINFO_TEST_PUSH_HOOK` runs the gc then) a gc with a zero
/// retention removes everything a's push left. c's push writes its manifests, re-checks the
/// blobs it relied on, sends them again, and the remote ends whole.
fn a_push_interleaved_with_gc_loses_nothing(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "gc-race");
    let a = clone_source(t, "a");
    push_with_uinfo(t, a.root(), &target);
    let pushed = listing(&target);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let c = clone_source(t, "c");
    add_remote(t, c.root(), &target);
    let gc_out = t.join("gc.json");
    let hook = format!(
        "before-manifests:{} --store {} gc --remote lab --retention 0s --grace 2s --json > {}",
        uinfo_bin().display(),
        a.root().display(),
        gc_out.display()
    );
    let mut env = target.env.clone();
    env.push(("UINFO_TEST_PUSH_HOOK".into(), hook));
    let out = uinfo_env(t, c.root(), &["push", "tiny.toml", "-q"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&std::fs::read(&gc_out).unwrap()).unwrap();
    let removed = report["removed"].as_array().unwrap();
    let blobs_removed = removed
        .iter()
        .filter(|p| p[0].as_str().unwrap().starts_with("blobs/"))
        .count();
    assert!(
        blobs_removed > 0,
        "the gc ran mid-push and removed blobs: {report}"
    );
    let after = listing(&target);
    for (key, size) in pushed.iter().filter(|(k, _)| !k.starts_with("records/")) {
        assert_eq!(
            after.get(key),
            Some(size),
            "{key} is on the remote after the push"
        );
    }
    assert_eq!(
        verify(t, c.root(), &target, &[]).0,
        0,
        "every manifest has its blobs"
    );
    clean_up(kind, &target);
}

#[test]
fn s3_gc_removes_what_only_an_expired_record_reached() {
    gc_removes_what_only_an_expired_record_reached(Kind::S3);
}

#[test]
fn file_gc_removes_what_only_an_expired_record_reached() {
    gc_removes_what_only_an_expired_record_reached(Kind::File);
}

#[test]
fn s3_a_push_interleaved_with_gc_loses_nothing() {
    a_push_interleaved_with_gc_loses_nothing(Kind::S3);
}

#[test]
fn file_a_push_interleaved_with_gc_loses_nothing() {
    a_push_interleaved_with_gc_loses_nothing(Kind::File);
}

/// Starts an upload of `rel` the way a push killed midway leaves it: an S3 multipart upload
/// with one part sent and never completed, or (`file://`) the staging file `object_store`
/// writes before linking an object into place.
fn abandon_upload(kind: Kind, target: &Target, t: &std::path::Path, rel: &str) {
    match kind {
        Kind::S3 => runtime().block_on(async {
            let mut upload = target
                .objects
                .put_multipart(&target.key(rel))
                .await
                .unwrap();
            upload
                .put_part(PutPayload::from(vec![7u8; 5 << 20]))
                .await
                .unwrap();
            std::mem::forget(upload);
        }),
        Kind::File => {
            let path = t.join("remote-uploads").join(format!("{rel}#3"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, vec![7u8; 1 << 20]).unwrap();
        }
    }
}

/// The unfinished uploads a gc report names (aborted, or would be), and those it kept.
fn uploads(
    t: &std::path::Path,
    store: &std::path::Path,
    target: &Target,
    args: &[&str],
) -> (usize, usize) {
    let mut all = vec!["gc", "--remote", "lab", "--json"];
    all.extend_from_slice(args);
    let out = uinfo_env(t, store, &all, &target.env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let named = report["uploads"].as_array().unwrap();
    assert!(
        named.iter().all(|k| k.as_str().unwrap().contains("blobs/")),
        "{report}"
    );
    (
        named.len(),
        report["young_uploads"].as_u64().unwrap() as usize,
    )
}

/// An upload a killed push left unfinished is kept while it is younger than the grace
/// period, then aborted (S3) or removed (`file://`); the pushed objects stay.
fn gc_cleans_unfinished_uploads(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "uploads");
    let a = clone_source(t, "a");
    push_with_uinfo(t, a.root(), &target);
    let pushed = listing(&target);
    abandon_upload(
        kind,
        &target,
        t,
        &format!("blobs/{}", Digest::of(b"never finished").hex()),
    );
    assert_eq!(
        uploads(t, a.root(), &target, &["--dry-run"]),
        (0, 1),
        "young: kept"
    );
    let later = [
        "--now",
        "2100-01-01T00:00:00Z",
        "--retention",
        "100000d",
        "--grace",
        "1h",
    ];
    let mut dry = later.to_vec();
    dry.push("--dry-run");
    assert_eq!(uploads(t, a.root(), &target, &dry), (1, 0));
    assert_eq!(uploads(t, a.root(), &target, &later), (1, 0), "aborted");
    assert_eq!(uploads(t, a.root(), &target, &later), (0, 0), "gone");
    assert_eq!(listing(&target), pushed, "the pushed objects stay");
    clean_up(kind, &target);
}

#[test]
fn s3_gc_cleans_unfinished_uploads() {
    gc_cleans_unfinished_uploads(Kind::S3);
}

#[test]
fn file_gc_cleans_unfinished_uploads() {
    gc_cleans_unfinished_uploads(Kind::File);
}
