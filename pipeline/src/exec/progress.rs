//! A run's progress: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress display: a bar on a terminal, plain lines otherwise.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    pub(super) fn new(total: usize, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal() && total > 0).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} nodes [{elapsed_precise}, eta {eta}] {msg}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            b
        });
        Progress { bar, quiet }
    }

    pub(super) fn finished(&self, name: &str, what: &str, seconds: f64) {
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.set_message(name.to_string());
            }
            None if !self.quiet => eprintln!("{what:>6} {name} ({seconds:.2} s)"),
            None => {}
        }
    }

    pub(super) fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn failed(&self, name: &str, error: &str) {
        let line = format!("FAILED {name}: {error}");
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn skip(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
