"""The Flux model's training step written from the definitions, in NumPy and float64, with no
automatic differentiation: the forward pass as Flux defines it (a true convolution over WHCN,
NNlib's activation and pooling, ``MLUtils.flatten``, ``Dense``), ``Flux.logitcrossentropy``, its
gradient derived by hand, and Optimisers.jl's ``Adam`` (optionally after ``WeightDecay``):

    mt = β₁ mt + (1 - β₁) g;  vt = β₂ vt + (1 - β₂) g²
    x -= mt / (1 - βt₁) / (sqrt(vt / (1 - βt₂)) + ϵ) * η;   βt = βt .* β   (βt starts at β)
"""

from __future__ import annotations

import numpy as np


def _patches(x, k, stride, pad):
    """(ow, oh, k, k, C, N) windows of a (W, H, C, N) array, zero-padded."""
    W, H, C, N = x.shape
    padded = np.zeros((W + 2 * pad, H + 2 * pad, C, N))
    padded[pad:pad + W, pad:pad + H] = x
    ow, oh = (W + 2 * pad - k) // stride + 1, (H + 2 * pad - k) // stride + 1
    out = np.empty((ow, oh, k, k, C, N))
    for a in range(k):
        for b in range(k):
            out[:, :, a, b] = padded[a:a + stride * ow:stride, b:b + stride * oh:stride]
    return out


_ACT = {
    "identity": (lambda z: z, lambda z, y: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda z, y: (z > 0).astype(float)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, y: y * (1 - y)),
    "tanh": (np.tanh, lambda z, y: 1 - y * y),
}


def _windows(y, q):
    """(pw, ph, q, q, C, N) non-overlapping q×q windows of a (W, H, C, N) array."""
    W, H, C, N = y.shape
    pw, ph = (W - q) // q + 1, (H - q) // q + 1
    trimmed = y[:pw * q, :ph * q].reshape(pw, q, ph, q, C, N)
    return trimmed.transpose(0, 2, 1, 3, 4, 5)


def loss_and_gradient(batch, labels, tensors, activation, stride, pad, pooling, pool_size):
    """``Flux.logitcrossentropy`` of the model on a (N, C, H, W) batch, and its gradient with
    respect to each Flux-layout tensor."""
    x = np.asarray(batch, np.float64).transpose(3, 2, 1, 0)  # WHCN
    wc = np.asarray(tensors["conv.weight"], np.float64)
    k, n = wc.shape[0], x.shape[3]
    patches = _patches(x, k, stride, pad)
    flipped = wc[::-1, ::-1]  # a true convolution: output (i, j) meets w[k-1-a, k-1-b]
    z = np.einsum("ijabcn,abco->ijon", patches, flipped) + tensors["conv.bias"][None, None, :, None]
    act, dact = _ACT[activation]
    y = act(z)
    if pooling:
        windows = _windows(y, pool_size)
        pooled = windows.max(axis=(2, 3)) if pooling == "max" else windows.mean(axis=(2, 3))
    else:
        pooled = y
    features = pooled.reshape(-1, n, order="F")  # column-major, as MLUtils.flatten
    wd = np.asarray(tensors["dense.weight"], np.float64)
    logits = wd @ features + tensors["dense.bias"][:, None]
    shifted = logits - logits.max(axis=0)
    logp = shifted - np.log(np.exp(shifted).sum(axis=0))
    onehot = np.zeros_like(logits)
    onehot[labels, np.arange(n)] = 1
    loss = -(onehot * logp).sum(axis=0).mean()

    # Backward, by the chain rule.
    dlogits = (np.exp(logp) - onehot) / n
    grads = {"dense.weight": dlogits @ features.T, "dense.bias": dlogits.sum(axis=1)}
    dpooled = (wd.T @ dlogits).reshape(pooled.shape, order="F")
    dy = np.zeros_like(y)
    if pooling:
        q = pool_size
        dwin = _windows(dy, q)  # a view into dy
        if pooling == "max":
            mask = windows == windows.max(axis=(2, 3), keepdims=True)
            dwin += mask * dpooled[:, :, None, None]
        else:
            dwin += dpooled[:, :, None, None] / (q * q)
    else:
        dy = dpooled
    dz = dy * dact(z, y)
    grads["conv.weight"] = np.einsum("ijabcn,ijon->abco", patches, dz)[::-1, ::-1]
    grads["conv.bias"] = dz.sum(axis=(0, 1, 3))
    return loss, grads


def adam_steps(batch, labels, tensors, steps, lr, betas, eps, weight_decay=0.0, **arch):
    """The tensors after ``steps`` full-batch steps of Optimisers.jl's ``Adam`` (after
    ``WeightDecay(weight_decay)``), and the loss before each step."""
    x = {name: np.asarray(t, np.float64).copy() for name, t in tensors.items()}
    m = {name: np.zeros_like(t) for name, t in x.items()}
    v = {name: np.zeros_like(t) for name, t in x.items()}
    beta_t = np.array(betas, np.float64)
    losses = []
    for _ in range(steps):
        loss, grads = loss_and_gradient(batch, labels, x, **arch)
        losses.append(loss)
        for name in x:
            g = grads[name] + weight_decay * x[name]
            m[name] = betas[0] * m[name] + (1 - betas[0]) * g
            v[name] = betas[1] * v[name] + (1 - betas[1]) * g * g
            x[name] -= m[name] / (1 - beta_t[0]) / (np.sqrt(v[name] / (1 - beta_t[1])) + eps) * lr
        beta_t = beta_t * betas
    return x, losses
