"""The Flux model written out by hand, loop by loop, as Flux defines it: the independent reference
the PyTorch and Flux backends are both checked against. Slow; meant for tiny inputs only."""

from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = {
    "identity": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)),
    "tanh": math.tanh,
}


def conv_whcn(x, weight, bias, stride=1, pad=0, flip=True):
    """Flux's ``Conv(weight, bias)`` on a (W, H, C, N) array, ``weight`` (kW, kH, Cin, Cout).

    ``flip=True`` is a true convolution, Flux's ``Conv``: output (i, j) sums
    ``x[i*s + a, j*s + b] * weight[kW-1-a, kH-1-b]``; ``flip=False`` is a cross-correlation.
    """
    W, H, C, N = x.shape
    kw, kh, cin, cout = weight.shape
    assert cin == C
    padded = np.zeros((W + 2 * pad, H + 2 * pad, C, N), np.float64)
    padded[pad : pad + W, pad : pad + H] = x
    ow, oh = (W + 2 * pad - kw) // stride + 1, (H + 2 * pad - kh) // stride + 1
    y = np.zeros((ow, oh, cout, N), np.float64)
    for n in range(N):
        for o in range(cout):
            for i in range(ow):
                for j in range(oh):
                    total = float(bias[o])
                    for c in range(C):
                        for a in range(kw):
                            for b in range(kh):
                                wa, wb = (kw - 1 - a, kh - 1 - b) if flip else (a, b)
                                total += (
                                    padded[i * stride + a, j * stride + b, c, n]
                                    * weight[wa, wb, c, o]
                                )
                    y[i, j, o, n] = total
    return y


def pool_whcn(y, kind, size):
    """Flux's ``MaxPool((size, size))`` or ``MeanPool((size, size))``: stride = window, no pad."""
    W, H, C, N = y.shape
    out = np.zeros(((W - size) // size + 1, (H - size) // size + 1, C, N), np.float64)
    for n in range(N):
        for c in range(C):
            for i in range(out.shape[0]):
                for j in range(out.shape[1]):
                    window = [
                        y[i * size + a, j * size + b, c, n]
                        for a in range(size)
                        for b in range(size)
                    ]
                    out[i, j, c, n] = max(window) if kind == "max" else sum(window) / len(window)
    return out


def flatten_whcn(y):
    """``MLUtils.flatten``: each sample's (W, H, C) block in column-major order (W fastest)."""
    W, H, C, N = y.shape
    features = np.zeros((W * H * C, N), np.float64)
    for n in range(N):
        f = 0
        for c in range(C):
            for j in range(H):
                for i in range(W):
                    features[f, n] = y[i, j, c, n]
                    f += 1
    return features


def conv_blocks(tensors) -> list[str]:
    """The conv blocks' names in ``tensors``, in order: ``conv``, ``conv2``, ``conv3``, …"""
    names = ["conv"]
    while f"conv{len(names) + 1}.weight" in tensors:
        names.append(f"conv{len(names) + 1}")
    return names


def forward_nchw(
    batch, tensors, activation="relu", stride=1, pad=0, pooling=None, pool_size=2, flip=True
):
    """(N, outputs) logits for a (N, C, H, W) batch and Flux-layout ``tensors`` (one conv block
    per ``conv*.weight``)."""
    N, C, H, W = batch.shape
    x = np.zeros((W, H, C, N), np.float64)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    x[w, h, c, n] = batch[n, c, h, w]
    y = x
    for name in conv_blocks(tensors):  # conv, conv2, …: each Conv → activation → [pooling]
        y = conv_whcn(y, tensors[f"{name}.weight"], tensors[f"{name}.bias"], stride, pad, flip)
        y = np.vectorize(ACTIVATIONS[activation])(y)
        if pooling:
            y = pool_whcn(y, pooling, pool_size)
    features = flatten_whcn(y)
    dense_w, dense_b = tensors["dense.weight"], tensors["dense.bias"]
    logits = np.zeros((dense_w.shape[0], N), np.float64)
    for n in range(N):
        for k in range(dense_w.shape[0]):
            logits[k, n] = dense_b[k] + sum(
                dense_w[k, f] * features[f, n] for f in range(features.shape[0])
            )
    return logits.T
