"""A numpy float64 forward pass of the `allcnn` and `resnet18` checkpoints, read with
`safetensors` under their PyTorch names and layouts (conv weights out × in × k × k, batch-norm
running statistics), reproduces the stored representations and logits in eval mode.

The same loads into PyTorch: for `resnet18`, the common CIFAR ResNet-18 module (`conv1`, `bn1`,
`layer{1-4}.{0,1}.conv1|bn1|conv2|bn2|shortcut.0|shortcut.1`, `linear`); for `allcnn`,
`conv1`…`conv9` and `bn1`…`bn8`. Images are (pixel / 255 − norm.mean) / norm.std per channel.
"""

import numpy as np
import pytest
from safetensors.numpy import load_file

EPS = 1e-5


def conv(x, w, stride, pad, b=None):
    """2-D convolution, NCHW input, PyTorch weight layout, zero padding."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, :, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    if b is not None:
        out += b[None, :, None, None]
    return out


def bn(x, t, name):
    g, b = t[f"{name}.weight"], t[f"{name}.bias"]
    m, v = t[f"{name}.running_mean"], t[f"{name}.running_var"]
    return (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + EPS) * g[None, :, None, None] + b[None, :, None, None]


def relu(x):
    return np.maximum(x, 0)


def pool(x):
    return x.mean(axis=(2, 3))


def allcnn(x, t):
    layers = [(1, 1), (1, 1), (2, 1), (1, 1), (1, 1), (2, 1), (1, 0), (1, 0)]
    features = []
    for i, (stride, pad) in enumerate(layers, start=1):
        x = relu(bn(conv(x, t[f"conv{i}.weight"], stride, pad), t, f"bn{i}"))
        if i in (3, 6, 8):
            features.append(pool(x))
    logits = pool(conv(x, t["conv9.weight"], 1, 0, t["conv9.bias"]))
    return features, logits


def resnet18(x, t):
    x = relu(bn(conv(x, t["conv1.weight"], 1, 1), t, "bn1"))
    features = []
    for s in range(1, 5):
        for b in range(2):
            name = f"layer{s}.{b}"
            stride = 2 if s > 1 and b == 0 else 1
            y = relu(bn(conv(x, t[f"{name}.conv1.weight"], stride, 1), t, f"{name}.bn1"))
            y = bn(conv(y, t[f"{name}.conv2.weight"], 1, 1), t, f"{name}.bn2")
            if f"{name}.shortcut.0.weight" in t:
                x = bn(conv(x, t[f"{name}.shortcut.0.weight"], stride, 0), t, f"{name}.shortcut.1")
            x = relu(y + x)
        features.append(pool(x))
    logits = features[-1] @ t["linear.weight"].T + t["linear.bias"]
    return features, logits


@pytest.mark.parametrize("arch,forward,probed", [
    ("allcnn", allcnn, ["conv3", "conv6", "conv8"]),
    ("resnet18", resnet18, ["layer1", "layer2", "layer3", "layer4"]),
])
def test_eval_forward_reproduces_the_representations(show_image, arch, forward, probed):
    ckpt_file = show_image(f"train/arch={arch},seed=0/e0-1")["files"]["checkpoint.safetensors"]
    t = {k: v.astype(np.float64) for k, v in load_file(ckpt_file).items() if v.dtype == np.float32}
    assert any(k.endswith("running_var") for k in t), "batch-norm statistics are saved"
    data = load_file(show_image("dataset")["files"]["dataset.safetensors"])
    reps = load_file(show_image(f"extract/arch={arch},seed=0/e1")["files"]["representations.safetensors"])

    n = reps["val.logits"].shape[0]
    images = data["val.images"][:n].astype(np.float64) / 255.0
    mean, std = data["norm.mean"].astype(np.float64), data["norm.std"].astype(np.float64)
    x = (images - mean[None, :, None, None]) / std[None, :, None, None]

    features, logits = forward(x, t)
    for name, f in zip(probed, features):
        stored = reps[f"val.{name}"]
        assert stored.shape == f.shape, name
        assert np.abs(stored - f).max() <= 1e-4 * max(1.0, np.abs(f).max()), name
    assert np.abs(reps["val.logits"] - logits).max() <= 1e-4 * max(1.0, np.abs(logits).max())
