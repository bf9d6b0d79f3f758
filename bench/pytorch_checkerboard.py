"""The PyTorch side of `bench/vs-pytorch.sh`: one run of the default checkerboard experiment's
work written as a researcher would write it in plain PyTorch, on one CPU thread.

The protocol is uinfo's (SPEC §1.1, §1.5): fc 4 → 3 × 100 ReLU → 2, SGD (lr 0.05, weight decay
5e-3, no momentum) on `direction`, a validation pass after every epoch; at each checkpoint the
post-ReLU activations of the three hidden layers are extracted (train and validation splits) and
decoded for `color` and `direction` by a decoder trained with full-batch Adam (lr 1e-2, 300
steps; evaluated on the last 10% of the training split every 10 steps and at the last, the best
step kept) and scored on the validation split: bits = H(Y) − CE / ln 2.

The dataset and the initial weights are uinfo's (paths to its safetensors blobs), so both sides
start from the same network. Prints one JSON object.
"""

import argparse
import json
import math
import resource
import time

import numpy as np
import torch
from torch import nn
from safetensors.numpy import load_file


def network(init):
    layers = []
    for i in range(4):
        w = torch.from_numpy(init[f"layers.{i}.weight"].copy())
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(torch.from_numpy(init[f"layers.{i}.bias"].copy()))
        layers.append(lin)
        if i < 3:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train_epochs(net, x, y, xv, yv, batch, epochs, seed, lr, wd, on_epoch=None):
    """SGD over `epochs` epochs; returns the number of steps taken."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.0, weight_decay=wd)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    steps = 0
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            steps += 1
        net.eval()
        with torch.no_grad():
            loss_fn(net(xv), yv).item()
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return steps


def extract(net, x):
    """Post-ReLU activations of each hidden layer."""
    feats = []
    with torch.no_grad():
        h = x
        for module in net:
            h = module(h)
            if isinstance(module, nn.ReLU):
                feats.append(h.clone())
    return feats


def entropy_bits(y, classes):
    p = np.bincount(y.numpy(), minlength=classes) / len(y)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def decoder(kind, dim, classes, seed):
    torch.manual_seed(seed)
    if kind == "linear":
        return nn.Linear(dim, classes)
    return nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, classes))


def probe(kind, z_train, z_test, y_train, y_test, classes=2, steps=300, every=10, lr=1e-2):
    """Usable information (bits) of one label in one representation."""
    n = len(y_train)
    n_fit = n - round(n * 0.1)
    xf, yf = z_train[:n_fit], y_train[:n_fit]
    xe, ye = z_train[n_fit:], y_train[n_fit:]
    dec = decoder(kind, z_train.shape[1], classes, 0)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    best_es, best_test = math.inf, math.nan
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                es = loss_fn(dec(xe), ye).item()
                if es < best_es:
                    best_es, best_test = es, loss_fn(dec(z_test), y_test).item()
        if step == steps:
            break
        opt.zero_grad()
        loss_fn(dec(xf), yf).backward()
        opt.step()
    return entropy_bits(yf, classes) - best_test / math.log(2)


def probe_node(kind, net, x, xv, labels, vlabels):
    """One probe node: every hidden layer × both labels at one checkpoint."""
    ft, fv = extract(net, x), extract(net, xv)
    return {
        (layer, label): probe(kind, ft[layer], fv[layer], labels[label], vlabels[label])
        for layer in range(len(ft))
        for label in ("color", "direction")
    }


def best_of_three(measure):
    """The smallest of three measurements: this VM's speed varies by a fifth from one moment to
    the next, and uinfo's side takes the best of three as well."""
    return min(measure() for _ in range(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--checkpoints", default="0,1,2,3,4,5,10,20,30,40,50,60,70,80,90,100")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    data = load_file(args.dataset)
    init = load_file(args.init)
    x = torch.from_numpy(data["train.inputs"])
    xv = torch.from_numpy(data["val.inputs"])
    labels = {k: torch.from_numpy(data[f"train.{k}"]) for k in ("color", "direction")}
    vlabels = {k: torch.from_numpy(data[f"val.{k}"]) for k in ("color", "direction")}
    y, yv = labels["direction"], vlabels["direction"]
    lr, wd = 0.05, 5e-3
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    # Training step time at batch 32 and 1024 (a few epochs each, after one warm-up epoch), the
    # best of three such stretches.
    for batch, epochs in ((32, 5), (1024, 40)):
        net = network(init)
        train_epochs(net, x, y, xv, yv, batch, 1, args.seed, lr, wd)

        def ms_per_step():
            t = time.perf_counter()
            steps = train_epochs(net, x, y, xv, yv, batch, epochs, args.seed, lr, wd)
            return (time.perf_counter() - t) / steps * 1e3

        out[f"train_ms_per_step_b{batch}"] = best_of_three(ms_per_step)

    # One probe node of each decoder family (the initial network's representations), the best
    # of three.
    net = network(init)
    for kind in ("linear", "mlp"):

        def node_s():
            t = time.perf_counter()
            probe_node(kind, net, x, xv, labels, vlabels)
            return time.perf_counter() - t

        out[f"probe_node_s_{kind}"] = best_of_three(node_s)

    # One whole run: training with its checkpoints extracted and probed by linear decoders.
    checkpoints = {int(c) for c in args.checkpoints.split(",")}
    net = network(init)
    bits = {}
    t = time.perf_counter()

    def at_checkpoint(epoch):
        if epoch in checkpoints:
            bits[epoch] = probe_node("linear", net, x, xv, labels, vlabels)

    at_checkpoint(0)
    train_epochs(net, x, y, xv, yv, 32, args.epochs, args.seed, lr, wd, at_checkpoint)
    out["whole_run_s"] = time.perf_counter() - t
    final = bits[max(bits)]
    out["final_bits"] = {f"hidden{layer + 1}.{label}": v for (layer, label), v in final.items()}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
