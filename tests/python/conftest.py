"""Fixtures for the Python interop tests: one small `uinfo run` per session.

The tests need the built binary, named by `UINFO_BIN`; without it every test is skipped.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

TINY_TOML = """\
name = "tiny"
[dataset]
n = 2000
[train]
seeds = 2
epochs = 4
batch = [32, 256]
checkpoints = [0, 1, 2, 3, 4]
[probe]
labels = ["color", "direction"]
steps = 60
"""


@pytest.fixture(scope="session")
def uinfo_bin() -> str:
    """Path to the `uinfo` binary, from `UINFO_BIN`; skips the tests when it is unset."""
    path = os.environ.get("UINFO_BIN")
    if not path:
        pytest.skip("UINFO_BIN is unset: build uinfo and set UINFO_BIN=/path/to/uinfo to run the Python interop tests")
    if not os.access(path, os.X_OK):
        pytest.fail(f"UINFO_BIN={path} is not an executable file")
    return path


@pytest.fixture(scope="session")
def store(uinfo_bin, tmp_path_factory) -> Path:
    """A store in which the `tiny` experiment has been run once."""
    tmp = tmp_path_factory.mktemp("uinfo")
    toml = tmp / "tiny.toml"
    toml.write_text(TINY_TOML)
    store = tmp / "store"
    subprocess.run([uinfo_bin, "--store", str(store), "run", str(toml), "-q"], check=True, timeout=600)
    return store


def shower(uinfo_bin: str, store: Path):
    """A function giving the parsed `uinfo --json show NODE` of a node in `store`."""

    def show(node: str) -> dict:
        out = subprocess.run(
            [uinfo_bin, "--store", str(store), "--json", "show", node],
            check=True, timeout=60, capture_output=True, text=True,
        )
        return json.loads(out.stdout)

    return show


@pytest.fixture(scope="session")
def show(uinfo_bin, store):
    """`show(node)`: the parsed `uinfo --json show NODE` of a node of the tiny run."""
    return shower(uinfo_bin, store)


IMAGES_TOML = """\
name = "images"
[dataset]
task = "cifar10"
[model]
arch = ["allcnn", "resnet18"]
width_mult = 0.125
[train]
seeds = 1
epochs = 1
lr = 0.05
batch = 16
momentum = 0.9
checkpoints = [0, 1]
[probe]
steps = 20
[extract]
train_examples = 40
val_examples = 12
"""


def write_cifar10(folder: Path, n_train: int, n_test: int) -> None:
    """CIFAR-10 binary files of random images (1 label byte + 3,072 pixel bytes per record)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        n = n_test if name == "test_batch.bin" else n_train // 5
        labels = rng.integers(0, 10, size=(n, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())


@pytest.fixture(scope="session")
def image_store(uinfo_bin, tmp_path_factory) -> Path:
    """A store in which small `allcnn` and `resnet18` networks trained one epoch on CIFAR-10-format data."""
    tmp = tmp_path_factory.mktemp("uinfo-images")
    data = tmp / "data"
    write_cifar10(data / "cifar-10-batches-bin", 80, 12)
    toml = tmp / "images.toml"
    toml.write_text(IMAGES_TOML)
    store = tmp / "store"
    subprocess.run(
        [uinfo_bin, "--store", str(store), "--data", str(data), "run", str(toml), "-q"],
        check=True, timeout=600,
    )
    return store


@pytest.fixture(scope="session")
def show_image(uinfo_bin, image_store):
    """`show_image(node)`: the parsed `uinfo --json show NODE` of a node of the image run."""
    return shower(uinfo_bin, image_store)
