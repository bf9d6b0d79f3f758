"""Python reads uinfo's outputs unchanged: Parquet tables through pyarrow, polars and DuckDB,
safetensors checkpoints, datasets and representations through `safetensors` and numpy.

Loading a checkpoint into PyTorch (torch is not a test dependency, so this is documentation):
`layers.{i}.weight` (out × in, float32) and `layers.{i}.bias` use `nn.Linear`'s layout, so for
the `fc` network (depth hidden layers then the head)

    net = nn.Sequential(nn.Linear(4, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                        nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 2))
    t = safetensors.torch.load_file(path)
    net.load_state_dict({f"{2 * i}.{p}": t[f"layers.{i}.{p}"]
                         for i in range(4) for p in ("weight", "bias")})

and `momentum.layers.{i}.{p}` is the SGD `momentum_buffer` of the same parameter.
"""

import math

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

COLUMNS = {
    "usable_info": [
        "experiment", "run_id", "seed", "epoch", "step", "layer_index", "layer", "label", "decoder",
        "bits", "ce_nats", "accuracy", "h_y_bits", "null_bits", "n_train", "n_test", "batch",
        "decoder_lr", "decoder_steps", "decoder_hidden", "decoder_standardize",
    ],
    "summary": [
        "experiment", "config", "batch", "layer_index", "layer", "label", "decoder",
        "initial_bits_mean", "peak_bits_mean", "peak_bits_lower", "peak_bits_upper", "peak_epoch",
        "final_bits_mean", "final_bits_lower", "final_bits_upper", "n_seeds", "null_bits_mean",
        "null_bits_max",
    ],
    "claims": [
        "claim", "statement", "verdict", "note", "condition", "config", "quantity", "comparison",
        "outcome", "measured", "mean", "lower", "upper", "threshold", "n_seeds", "seeds_needed",
    ],
    "training_log": [
        "run_id", "seed", "batch", "epoch", "step", "lr", "train_loss", "train_accuracy",
        "val_loss", "val_accuracy",
    ],
    "timings": ["node", "stage", "host", "started", "seconds"],
}

TRAIN_NODE = "train/batch=32,seed=0/e2-3"
EXTRACT_NODE = "extract/batch=32,seed=0/e3"


def table_path(store, name):
    return store / "out" / "tiny" / f"{name}.parquet"


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_table_reads_alike(store, name):
    """pyarrow, polars and DuckDB read each table with the same rows and the SPEC §3.3 columns."""
    path = table_path(store, name)
    arrow = pq.read_table(path)
    frame = pl.read_parquet(path)
    rel = duckdb.sql(f"select * from read_parquet('{path}')")
    n_duck = duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0][0]

    assert arrow.num_rows > 0
    assert arrow.num_rows == frame.height == n_duck
    missing = [c for c in COLUMNS[name] if c not in arrow.column_names]
    assert not missing, f"{name}.parquet lacks columns {missing}; has {arrow.column_names}"
    assert arrow.column_names == frame.columns == rel.columns


def test_usable_info_types_and_values(store):
    """usable_info has typed columns, finite bits, an all-null `null_bits` and integer `batch`."""
    path = table_path(store, "usable_info")
    t = pq.read_table(path)
    assert t.schema.field("bits").type == pa.float64()
    assert t.schema.field("epoch").type == pa.int64()
    assert pa.types.is_integer(t.schema.field("batch").type)
    assert sorted(set(t.column("batch").to_pylist())) == [32, 256]
    assert np.isfinite(t.column("bits").to_numpy()).all()
    assert t.column("null_bits").null_count == t.num_rows

    frame = pl.read_parquet(path)
    assert frame.schema["bits"] == pl.Float64 and frame.schema["epoch"] == pl.Int64
    rel = duckdb.sql(f"select bits, epoch from read_parquet('{path}')")
    assert [str(t) for t in rel.types] == ["DOUBLE", "BIGINT"]


def test_bits_formula(store):
    """Every row satisfies bits = H(Y) − CE / ln 2 (exact 1/ln 2, no clipping)."""
    t = pq.read_table(table_path(store, "usable_info"), columns=["bits", "h_y_bits", "ce_nats"])
    bits, h_y, ce = (t.column(c).to_numpy() for c in ("bits", "h_y_bits", "ce_nats"))
    assert np.abs(bits - (h_y - ce / math.log(2))).max() < 1e-9


def test_claims_rows(store):
    """The claims table has rows for C1 to C5 with typed numbers beside the text."""
    claims = pl.read_parquet(table_path(store, "claims"))
    assert set(claims["claim"].to_list()) == {"C1", "C2", "C3", "C4", "C5"}
    assert claims.schema["mean"] == pl.Float64 and claims.schema["threshold"] == pl.Float64
    assert claims.schema["n_seeds"] == pl.Int64 and claims.schema["seeds_needed"] == pl.Int64
    assert set(claims["verdict"].to_list()) <= {"holds", "does not hold", "inconclusive", "not evaluated"}
    c1 = claims.filter(pl.col("claim") == "C1")
    assert c1.height == 2, "one C1 condition per configuration"
    assert (c1["lower"] <= c1["mean"]).all() and (c1["mean"] <= c1["upper"]).all()


def test_training_log_holds_no_wall_clock_time(store):
    """Timings live in timings.parquet, outside the cached tables (SPEC §3.2)."""
    log = pq.read_table(table_path(store, "training_log"))
    assert not [c for c in log.column_names if "second" in c or "time" in c]
    timings = pl.read_parquet(table_path(store, "timings"))
    assert timings["seconds"].min() >= 0
    assert set(timings["stage"].to_list()) >= {"dataset", "train", "probe", "analyze", "report"}


def test_checkpoint_layout(show):
    """A train-segment checkpoint has the documented tensor names, shapes, dtypes and metadata."""
    shown = show(TRAIN_NODE)
    assert set(shown["files"]) == set(shown["manifest"]["outputs"]) >= {"checkpoint.safetensors", "log.parquet"}
    path = shown["files"]["checkpoint.safetensors"]
    ckpt = load_file(path)

    shapes = [(100, 4), (100, 100), (100, 100), (2, 100)]
    for i, (out, inp) in enumerate(shapes):
        for prefix in ("", "momentum."):
            w, b = ckpt[f"{prefix}layers.{i}.weight"], ckpt[f"{prefix}layers.{i}.bias"]
            assert w.shape == (out, inp) and w.dtype == np.float32
            assert b.shape == (out,) and b.dtype == np.float32
    for name in ("epoch", "step", "rng.seed"):
        assert ckpt[name].dtype == np.int64 and ckpt[name].shape == (1,)
    assert ckpt["epoch"][0] == 3
    assert ckpt["step"][0] > 0

    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert meta["stage"] == "train"
    assert meta["uinfo_version"]


def test_forward_pass_matches_representations(show):
    """A numpy float32 forward pass of the epoch-3 checkpoint on the validation inputs reproduces
    the stored hidden activations and logits."""
    ckpt = load_file(show(TRAIN_NODE)["files"]["checkpoint.safetensors"])
    data = load_file(show("dataset")["files"]["dataset.safetensors"])
    reps = load_file(show(EXTRACT_NODE)["files"]["representations.safetensors"])

    x = data["val.inputs"]
    assert x.dtype == np.float32 and x.shape[1] == 4
    for split in ("train", "val"):
        for label in ("direction", "color", "target", "condition"):
            y = data[f"{split}.{label}"]
            assert y.dtype == np.int64 and y.shape == (data[f"{split}.inputs"].shape[0],)

    h = x
    for i in range(3):
        h = np.maximum(h @ ckpt[f"layers.{i}.weight"].T + ckpt[f"layers.{i}.bias"], np.float32(0))
        assert h.dtype == np.float32
        assert np.abs(h - reps[f"val.hidden{i + 1}"]).max() < 1e-5, f"hidden{i + 1}"
    logits = h @ ckpt["layers.3.weight"].T + ckpt["layers.3.bias"]
    assert reps["val.logits"].shape == (x.shape[0], 2)
    assert np.abs(logits - reps["val.logits"]).max() < 1e-5
