"""The model stage: weights in Flux layout, forward pass on the chosen backend."""

from __future__ import annotations

import numpy as np

from ailusion.errors import ConfigError


class FluxCNN:
    """Conv((k, k), C => out_channels, relu) → flatten → Dense(features => num_outputs)."""

    def __init__(self, config, context):
        self.config = config
        self.run_dir = context.run_dir
        if config.num_outputs < 1:
            raise ConfigError("model.num_outputs", "must be at least 1")
        self.labels = list(config.labels) if config.labels else [str(i) for i in range(config.num_outputs)]
        self.weights = None

    def setup(self, input_shape):
        c, h, w = input_shape
        k, cout = self.config.kernel_size, self.config.out_channels
        oh, ow = h - k + 1, w - k + 1
        rng = np.random.default_rng(self.config.seed)

        def glorot(shape, fan_in, fan_out):
            limit = np.sqrt(6 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape).astype(np.float32)

        features = cout * oh * ow
        self.weights = {
            "conv.weight": glorot((k, k, c, cout), c * k * k, cout * k * k),
            "conv.bias": np.zeros(cout, np.float32),
            "dense.weight": glorot((self.config.num_outputs, features), features, self.config.num_outputs),
            "dense.bias": np.zeros(self.config.num_outputs, np.float32),
        }

    def forward(self, batch):
        import torch

        w = self.weights
        # Flux's Conv is a true convolution: flip the kernel for torch's cross-correlation.
        kernel = torch.from_numpy(np.ascontiguousarray(w["conv.weight"][::-1, ::-1].transpose(3, 2, 1, 0)))
        x = torch.nn.functional.conv2d(torch.from_numpy(batch), kernel, torch.from_numpy(w["conv.bias"]))
        x = torch.relu(x)
        # Flux flattens WHCN column-major, which is NCHW row-major.
        x = x.reshape(x.shape[0], -1)
        x = x @ torch.from_numpy(w["dense.weight"]).T + torch.from_numpy(w["dense.bias"])
        return x.numpy()
