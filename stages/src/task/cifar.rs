//! CIFAR-10 and CIFAR-100 (SPEC §1.3) from their standard binary distributions: a folder
//! `cifar-10-batches-bin/` (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`; records of
//! 1 label byte + 3,072 pixel bytes) or `cifar-100-binary/` (`train.bin`, `test.bin`; records of
//! a coarse and a fine label byte + 3,072 pixel bytes), or the official `.tar.gz` archive that
//! holds it. A network learns the coarse label; `coarse`, `fine` and `fine_beyond_coarse` are
//! measured. CIFAR-10's coarse label is a grouping of its classes (default: vehicles {airplane,
//! automobile, ship, truck} vs animals); CIFAR-100's is its official superclass.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::claims::TaskClaims;
use crate::data::{Dataset, Inputs, Split};
use crate::info::entropy_bits;
use crate::task::{Derived, Label, Source, Task, TaskParams};

/// Bytes of one image (3 channels of 32 × 32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// CIFAR-10's default coarse grouping: vehicles {airplane, automobile, ship, truck}, animals.
pub const VEHICLES_VS_ANIMALS: [&[u8]; 2] = [&[0, 1, 8, 9], &[2, 3, 4, 5, 6, 7]];

/// Which distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// CIFAR-10.
    Ten,
    /// CIFAR-100.
    Hundred,
}

impl Variant {
    /// The distribution's name.
    pub fn title(self) -> &'static str {
        match self {
            Variant::Ten => "CIFAR-10",
            Variant::Hundred => "CIFAR-100",
        }
    }

    /// The folder the binary files are in.
    pub fn folder(self) -> &'static str {
        match self {
            Variant::Ten => "cifar-10-batches-bin",
            Variant::Hundred => "cifar-100-binary",
        }
    }

    /// The official archive of that folder.
    pub fn archive(self) -> &'static str {
        match self {
            Variant::Ten => "cifar-10-binary.tar.gz",
            Variant::Hundred => "cifar-100-binary.tar.gz",
        }
    }

    /// The training files, then the test file.
    pub fn files(self) -> Vec<String> {
        match self {
            Variant::Ten => (1..=5)
                .map(|i| format!("data_batch_{i}.bin"))
                .chain(["test_batch.bin".to_string()])
                .collect(),
            Variant::Hundred => vec!["train.bin".into(), "test.bin".into()],
        }
    }

    /// Label bytes before each image: the label (CIFAR-10), or coarse then fine (CIFAR-100).
    pub fn label_bytes(self) -> usize {
        match self {
            Variant::Ten => 1,
            Variant::Hundred => 2,
        }
    }

    /// Bytes per record.
    pub fn record(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }

    /// The classes each label byte may take: (name, count).
    fn label_ranges(self) -> &'static [(&'static str, u8)] {
        match self {
            Variant::Ten => &[("", 10)],
            Variant::Hundred => &[("coarse ", 20), ("fine ", 100)],
        }
    }

    /// What the data folder should hold, for messages.
    pub fn expected(self) -> String {
        let files = self.files();
        let listed = match self {
            Variant::Ten => format!("{} … {} and {}", files[0], files[4], files[5]),
            Variant::Hundred => files.join(" and "),
        };
        format!(
            "the {} binary distribution: {}/ with {listed}, or {}",
            self.title(),
            self.folder(),
            self.archive()
        )
    }
}

/// The parameters of a CIFAR dataset node. The data folder is not among them: a dataset is keyed
/// by its files' contents, so moving the folder changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CifarParams {
    /// CIFAR-10: the classes of each coarse class (empty for CIFAR-100, whose files carry it).
    #[serde(default)]
    pub coarse: Vec<Vec<u8>>,
    /// The BLAKE3 digest (hex) of each data file, by name, recorded when the experiment is planned.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// Checks a CIFAR-10 grouping: at least two groups, every class 0–9 in exactly one.
pub fn check_grouping(coarse: &[Vec<u8>]) -> Result<(), String> {
    if coarse.len() < 2 {
        return Err(format!(
            "expected at least two groups of classes, got {}",
            coarse.len()
        ));
    }
    let mut seen = [0usize; 10];
    for &c in coarse.iter().flatten() {
        match seen.get_mut(c as usize) {
            Some(n) => *n += 1,
            None => {
                return Err(format!(
                    "class {c} does not exist (CIFAR-10 has classes 0 to 9)"
                ))
            }
        }
    }
    match seen.iter().position(|&n| n != 1) {
        Some(c) if seen[c] == 0 => Err(format!("class {c} is in no group")),
        Some(c) => Err(format!("class {c} is in {} groups", seen[c])),
        None => Ok(()),
    }
}

/// Reads and checks the data files of a distribution from `dir`: the folder inside it, `dir`
/// itself when it is that folder, or the archive. Returns (file name, bytes), training files
/// first. Errors are one line naming the path and what was expected.
pub fn read_files(variant: Variant, dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    if !dir.is_dir() {
        bail!(
            "{}: no such folder (expected {})",
            dir.display(),
            variant.expected()
        );
    }
    let names = variant.files();
    let folder = [dir.join(variant.folder()), dir.to_path_buf()]
        .into_iter()
        .find(|f| f.join(&names[0]).is_file() || f.ends_with(variant.folder()) && f.is_dir());
    let archive = dir.join(variant.archive());
    let files = match folder {
        Some(folder) => names
            .iter()
            .map(|name| {
                let path = folder.join(name);
                let bytes = std::fs::read(&path).map_err(|e| {
                    anyhow!(
                        "{}: {} (expected {} in {})",
                        path.display(),
                        if e.kind() == std::io::ErrorKind::NotFound {
                            "missing".to_string()
                        } else {
                            e.to_string()
                        },
                        names.join(", "),
                        folder.display()
                    )
                })?;
                check_records(variant, &path.display().to_string(), &bytes)?;
                Ok((name.clone(), bytes))
            })
            .collect::<Result<Vec<_>>>()?,
        None if archive.is_file() => read_archive(variant, &archive)?,
        None => bail!(
            "{}: no {} data here (expected {})",
            dir.display(),
            variant.title(),
            variant.expected()
        ),
    };
    Ok(files)
}

/// The data files from the official `.tar.gz` archive.
fn read_archive(variant: Variant, path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let names = variant.files();
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = tar
        .entries()
        .with_context(|| format!("{}: not a tar.gz archive", path.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{}: damaged archive", path.display()))?;
        let member = entry.path()?.to_path_buf();
        let in_folder = member
            .parent()
            .is_some_and(|p| p.ends_with(variant.folder()));
        let name = member.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if in_folder && names.iter().any(|n| n == name) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("{}: damaged archive", path.display()))?;
            found.insert(name.to_string(), bytes);
        }
    }
    names
        .iter()
        .map(|name| {
            let bytes = found.remove(name).ok_or_else(|| {
                anyhow!(
                    "{}: the archive lacks {}/{name} (expected {})",
                    path.display(),
                    variant.folder(),
                    variant.expected()
                )
            })?;
            let label = format!("{}:{}/{name}", path.display(), variant.folder());
            check_records(variant, &label, &bytes)?;
            Ok((name.clone(), bytes))
        })
        .collect()
}

/// Checks that a file is a whole, non-empty number of records with labels in range.
fn check_records(variant: Variant, path: &str, bytes: &[u8]) -> Result<()> {
    let record = variant.record();
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        bail!(
            "{path}: {} bytes is not a whole number of {record}-byte records ({} label byte{} + {IMAGE_BYTES} pixel bytes)",
            bytes.len(),
            variant.label_bytes(),
            if variant.label_bytes() == 1 { "" } else { "s" }
        );
    }
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        for (byte, (what, classes)) in r.iter().zip(variant.label_ranges()) {
            if byte >= classes {
                bail!(
                    "{path}: record {i} has {what}label {byte}, expected 0 to {}",
                    classes - 1
                );
            }
        }
    }
    Ok(())
}

/// The BLAKE3 digest (hex) of each file, by name.
pub fn digests(files: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(name, bytes)| (name.clone(), blake3::hash(bytes).to_hex().to_string()))
        .collect()
}

/// A CIFAR task: the distribution and its parameters.
pub struct Cifar<'a> {
    /// Which distribution.
    pub variant: Variant,
    /// Its parameters.
    pub params: &'a CifarParams,
}

impl Cifar<'_> {
    /// The coarse classes of CIFAR-10 (the grouping, or the default one).
    fn groups(&self) -> Vec<Vec<u8>> {
        if self.params.coarse.is_empty() {
            VEHICLES_VS_ANIMALS.iter().map(|g| g.to_vec()).collect()
        } else {
            self.params.coarse.clone()
        }
    }

    /// A split from its files' records.
    fn split(&self, files: &[&[u8]]) -> Split {
        let groups = self.groups();
        let mut coarse_of = [0i64; 10];
        for (g, classes) in groups.iter().enumerate() {
            for &c in classes {
                coarse_of[c as usize] = g as i64;
            }
        }
        let (mut pixels, mut coarse, mut fine) = (Vec::new(), Vec::new(), Vec::new());
        for bytes in files {
            for r in bytes.chunks_exact(self.variant.record()) {
                let (labels, image) = r.split_at(self.variant.label_bytes());
                match self.variant {
                    Variant::Ten => {
                        fine.push(labels[0] as i64);
                        coarse.push(coarse_of[labels[0] as usize]);
                    }
                    Variant::Hundred => {
                        coarse.push(labels[0] as i64);
                        fine.push(labels[1] as i64);
                    }
                }
                pixels.extend_from_slice(image);
            }
        }
        Split {
            inputs: Inputs::Images {
                shape: [3, 32, 32],
                pixels,
            },
            labels: [("coarse".to_string(), coarse), ("fine".to_string(), fine)].into(),
        }
    }
}

impl Task for Cifar<'_> {
    fn input_shape(&self) -> Vec<usize> {
        vec![32, 32, 3]
    }

    fn labels(&self) -> Vec<Label> {
        let (coarse, fine) = match self.variant {
            Variant::Ten => (self.groups().len(), 10),
            Variant::Hundred => (20, 100),
        };
        vec![
            Label {
                name: "coarse".into(),
                classes: coarse,
            },
            Label {
                name: "fine".into(),
                classes: fine,
            },
        ]
    }

    fn derived(&self) -> Vec<Derived> {
        vec![Derived {
            name: "fine_beyond_coarse",
            of: "fine",
            minus: "coarse",
        }]
    }

    fn default_target(&self) -> &'static str {
        "coarse"
    }

    fn default_probe_labels(&self) -> Vec<String> {
        vec!["coarse".into(), "fine".into()]
    }

    /// The network learns the coarse label; the fine information beyond it is meaningful but
    /// irrelevant to the output; C1 asks for 0.8 of H(coarse).
    fn claims(&self) -> TaskClaims {
        TaskClaims {
            relevant: "coarse".into(),
            irrelevant: "fine_beyond_coarse".into(),
            image: true,
            c1_fraction: 0.8,
        }
    }

    /// H(coarse) on the validation split.
    fn ceiling_bits(&self, data: &Dataset) -> Result<f64> {
        Ok(entropy_bits(
            data.val.label("coarse")?,
            self.classes("coarse")?,
        ))
    }

    /// Known only from the data.
    fn train_size(&self) -> Option<usize> {
        None
    }

    /// Reads the files from the data folder and checks they are the ones the experiment was
    /// planned with.
    fn make(&self, source: &Source) -> Result<Dataset> {
        let dir = source.data_dir.ok_or_else(|| {
            anyhow!(
                "no data folder: give the folder holding {} with --data DIR or UINFO_DATA",
                self.variant.expected()
            )
        })?;
        let files = read_files(self.variant, dir)?;
        if digests(&files) != self.params.files {
            bail!(
                "the {} files in {} are not the ones this experiment was planned with; run it again",
                self.variant.title(),
                dir.display()
            );
        }
        let bytes: Vec<&[u8]> = files.iter().map(|(_, b)| b.as_slice()).collect();
        let (train, test) = bytes.split_at(bytes.len() - 1);
        let params = self.params.clone();
        Ok(Dataset::new(
            self.split(train),
            self.split(test),
            match self.variant {
                Variant::Ten => TaskParams::Cifar10(params),
                Variant::Hundred => TaskParams::Cifar100(params),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: &[u8], fill: u8) -> Vec<u8> {
        let mut r = label.to_vec();
        r.extend(std::iter::repeat_n(fill, IMAGE_BYTES));
        r
    }

    fn write_cifar10(dir: &Path, per_file: usize) {
        let folder = dir.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&folder).unwrap();
        for (k, name) in Variant::Ten.files().iter().enumerate() {
            let bytes: Vec<u8> = (0..per_file)
                .flat_map(|i| record(&[((i + k) % 10) as u8], i as u8))
                .collect();
            std::fs::write(folder.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn cifar10_files_give_coarse_and_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), 20);
        let files = read_files(Variant::Ten, dir.path()).unwrap();
        let params = CifarParams {
            coarse: Vec::new(),
            files: digests(&files),
        };
        let task = Cifar {
            variant: Variant::Ten,
            params: &params,
        };
        let data = task
            .make(&Source {
                data_dir: Some(dir.path()),
            })
            .unwrap();
        assert_eq!((data.train.len(), data.val.len()), (100, 20));
        let (fine, coarse) = (
            data.train.label("fine").unwrap(),
            data.train.label("coarse").unwrap(),
        );
        for (f, c) in fine.iter().zip(coarse) {
            assert_eq!(*c, if [0, 1, 8, 9].contains(f) { 0 } else { 1 });
        }
        // Balanced classes: H(coarse) of a 4 / 6 split.
        let h = task.ceiling_bits(&data).unwrap();
        assert!((h - 0.971).abs() < 1e-3, "{h}");
        // The folder itself works too, and gives the same files.
        let inner = read_files(Variant::Ten, &dir.path().join("cifar-10-batches-bin")).unwrap();
        assert_eq!(digests(&inner), params.files);
    }

    #[test]
    fn the_official_archive_reads_like_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), 3);
        let folder = read_files(Variant::Ten, dir.path()).unwrap();
        let packed = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(packed.path().join("cifar-10-binary.tar.gz")).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        tar.append_dir_all(
            "cifar-10-batches-bin",
            dir.path().join("cifar-10-batches-bin"),
        )
        .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let archived = read_files(Variant::Ten, packed.path()).unwrap();
        assert_eq!(digests(&archived), digests(&folder));
    }

    #[test]
    fn bad_files_are_named_with_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let err = |d: &Path| read_files(Variant::Ten, d).unwrap_err().to_string();
        let e = err(&dir.path().join("nowhere"));
        assert!(
            e.contains("no such folder") && e.contains("data_batch_1.bin"),
            "{e}"
        );
        let e = err(dir.path());
        assert!(
            e.contains("no CIFAR-10 data") && e.contains("cifar-10-binary.tar.gz"),
            "{e}"
        );
        write_cifar10(dir.path(), 2);
        let folder = dir.path().join("cifar-10-batches-bin");
        std::fs::remove_file(folder.join("data_batch_3.bin")).unwrap();
        let e = err(dir.path());
        assert!(e.contains("data_batch_3.bin: missing"), "{e}");
        std::fs::write(folder.join("data_batch_3.bin"), vec![1u8; 3073 + 5]).unwrap();
        let e = err(dir.path());
        assert!(
            e.contains("data_batch_3.bin: 3078 bytes is not a whole number of 3073-byte records"),
            "{e}"
        );
        std::fs::write(folder.join("data_batch_3.bin"), record(&[12], 0)).unwrap();
        let e = err(dir.path());
        assert!(
            e.contains("data_batch_3.bin: record 0 has label 12, expected 0 to 9"),
            "{e}"
        );
    }

    #[test]
    fn cifar100_checks_both_label_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("cifar-100-binary");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("train.bin"),
            [record(&[3, 40], 1), record(&[19, 99], 2)].concat(),
        )
        .unwrap();
        std::fs::write(folder.join("test.bin"), record(&[20, 1], 0)).unwrap();
        let e = read_files(Variant::Hundred, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("test.bin: record 0 has coarse label 20, expected 0 to 19"),
            "{e}"
        );
    }

    #[test]
    fn groupings_cover_every_class_once() {
        assert!(check_grouping(&[vec![0, 1, 8, 9], vec![2, 3, 4, 5, 6, 7]]).is_ok());
        assert!(check_grouping(&[vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
            .unwrap_err()
            .contains("two groups"));
        assert!(check_grouping(&[vec![0, 1], vec![2, 3, 4, 5, 6, 7, 8]])
            .unwrap_err()
            .contains("class 9 is in no group"));
        assert!(
            check_grouping(&[vec![0, 1, 9], vec![2, 3, 4, 5, 6, 7, 8, 9]])
                .unwrap_err()
                .contains("class 9 is in 2 groups")
        );
        assert!(check_grouping(&[vec![0, 11], vec![]])
            .unwrap_err()
            .contains("class 11 does not exist"));
    }
}
