"""Training the PyTorch twin: torch's ``Adam`` on the softmax cross-entropy, step by step.

The update is Optimisers.jl's ``Adam`` (torch's applies the same formula for the same η, β and
ϵ), with weight decay as L2 added to the gradient (``OptimiserChain(WeightDecay(λ), Adam)``), and
the loss is ``Flux.logitcrossentropy``: the batch mean of ``-log softmax(logits)[label]``.
"""

from __future__ import annotations

import numpy as np

from .torch_backend import TorchBackend, flux_layout, torch_layout


class TorchTrainer:
    """Adam steps on a :class:`TorchBackend`'s weights, in place."""

    def __init__(self, backend: TorchBackend, settings):
        import torch

        if settings.threads:
            torch.set_num_threads(int(settings.threads))
        self.backend = backend
        self.params = backend.parameters()
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        self.optimizer = torch.optim.Adam(
            list(self.params.values()), lr=settings.lr, betas=tuple(settings.betas),
            eps=settings.eps, weight_decay=settings.weight_decay, foreach=False,
        )

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One Adam step on a batch; the loss and logits of the forward pass before it."""
        import torch
        import torch.nn.functional as F

        device = self.backend.device
        inputs = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)
        targets = torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)
        logits = self.backend.logits(inputs)
        loss = F.cross_entropy(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), logits.detach().cpu().numpy()

    def weights(self) -> dict[str, np.ndarray]:
        """The current weights, Flux layout."""
        return self.backend.tensors()

    def state(self) -> dict[str, np.ndarray]:
        """Weights and Adam's moments (Flux layout) and step count, to resume from."""
        state = {f"weights.{name}": array for name, array in self.weights().items()}
        steps = 0
        for name, tensor in self.params.items():
            moments = self.optimizer.state.get(tensor)
            if not moments:
                continue
            steps = int(moments["step"])
            state[f"adam.m.{name}"] = flux_layout(moments["exp_avg"].cpu().numpy())
            state[f"adam.v.{name}"] = flux_layout(moments["exp_avg_sq"].cpu().numpy())
        state["adam.step"] = np.array([steps], np.int64)
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Put back what :meth:`state` returned."""
        import torch

        device = self.backend.device
        steps = int(state["adam.step"][0])
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(torch.as_tensor(torch_layout(state[f"weights.{name}"])))
                if steps == 0:
                    continue

                def load(key):
                    return torch.as_tensor(torch_layout(state[key]), device=device).clone()

                self.optimizer.state[tensor] = {
                    "step": torch.tensor(float(steps)),
                    "exp_avg": load(f"adam.m.{name}"),
                    "exp_avg_sq": load(f"adam.v.{name}"),
                }
