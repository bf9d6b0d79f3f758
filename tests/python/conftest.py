"""Fixtures for the Python interop tests: one small `uinfo run` per session.

The tests need the built binary, named by `UINFO_BIN`; without it every test is skipped.
"""

import json
import os
import subprocess
from pathlib import Path

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


@pytest.fixture(scope="session")
def show(uinfo_bin, store):
    """`show(node)`: the parsed `uinfo --json show NODE` of a node of the tiny run."""

    def show(node: str) -> dict:
        out = subprocess.run(
            [uinfo_bin, "--store", str(store), "--json", "show", node],
            check=True, timeout=60, capture_output=True, text=True,
        )
        return json.loads(out.stdout)

    return show
