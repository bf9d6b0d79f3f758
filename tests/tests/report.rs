//! The report: `report.html` opens in headless Chromium with every figure decoded at its size,
//! a screenshot of it is not blank, and the figures are rebuilt from the Parquet tables alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use uinfo_tests::{stderr, tiny, uinfo};

fn run(dir: &Path, store: &Path) -> Value {
    let o = uinfo(dir, store, &["--json", "run", "tiny.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    let store = dir.path().join("store");
    run(dir.path(), &store);
    (dir, store)
}

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("Chromium is not installed: scripts/test.sh installs it (apt-get install chromium)");
}

fn headless(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn report_html_shows_every_figure_in_chromium() {
    let (_dir, store) = setup();
    let out = store.join("out/tiny");
    let html = out.join("report.html");
    let url = format!("file://{}", html.display());
    let dom = headless(&["--virtual-time-budget=10000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let attr = dom
        .split("data-figures=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no data-figures in DOM: {}", &dom[..dom.len().min(500)]));
    let (count, sizes) = attr.split_once(' ').unwrap();
    let pngs: Vec<PathBuf> = std::fs::read_dir(out.join("figures"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    // 2 configurations: one usable-information and one training figure each, and the last
    // layer with both configurations on one axis.
    assert_eq!(pngs.len(), 5, "{pngs:?}");
    assert!(
        pngs.iter().any(|p| p.ends_with("compare-hidden3.png")),
        "{pngs:?}"
    );
    assert_eq!(
        count,
        format!("{0}/{0}", pngs.len()),
        "images decoded by the browser: {attr}"
    );
    let mut expected: Vec<String> = pngs
        .iter()
        .map(|p| {
            let img = image::open(p).unwrap();
            format!("{}x{}", img.width(), img.height())
        })
        .collect();
    let mut seen: Vec<String> = sizes.split(',').map(str::to_string).collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "browser image sizes match the PNG files");

    let shot = tempfile::tempdir().unwrap();
    let shot_path = shot.path().join("report.png");
    let o = headless(&[
        "--window-size=1300,2400",
        &format!("--screenshot={}", shot_path.display()),
        &url,
    ]);
    assert!(
        shot_path.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let img = image::open(&shot_path).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1300, 2400));
    let coloured = img
        .pixels()
        .filter(|p| p.0[0].abs_diff(p.0[2]) > 60)
        .count();
    assert!(
        coloured > 2_000,
        "the screenshot shows hardly any coloured curve pixels ({coloured})"
    );
}

#[test]
fn deleted_figures_are_rebuilt_by_the_report_node_alone() {
    let (dir, store) = setup();
    let shown = uinfo(dir.path(), &store, &["--json", "show", "report"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let files = shown["files"].as_object().unwrap();
    let mut removed = 0;
    for (name, path) in files {
        if name.starts_with("figures/") {
            std::fs::remove_file(path.as_str().unwrap()).unwrap();
            removed += 1;
        }
    }
    assert!(removed >= 8, "{files:?}");
    let before = std::fs::read(store.join("out/tiny/usable_info.parquet")).unwrap();
    let r = run(dir.path(), &store);
    assert_eq!(r["computed"], 1, "{r}");
    for (name, path) in files {
        assert!(
            Path::new(path.as_str().unwrap()).exists(),
            "{name} was not rebuilt"
        );
    }
    assert_eq!(
        std::fs::read(store.join("out/tiny/usable_info.parquet")).unwrap(),
        before
    );
}
