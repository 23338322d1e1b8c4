"""Training the Flux model: ``AilusionFlux.train_step!`` (Optimisers.jl's ``Adam``,
``Flux.withgradient``, ``Flux.logitcrossentropy``, ``Flux.update!``) on the batches Python hands it.

Every call goes through the Julia thread (:mod:`.julia_thread`), as the forward pass does.
"""

from __future__ import annotations

import numpy as np

from .julia_backend import JuliaBackend, whcn_view
from .julia_thread import call, release


class JuliaTrainer:
    """Adam steps on a :class:`JuliaBackend`'s Flux chain, in place."""

    def __init__(self, backend: JuliaBackend, settings):
        self.backend = backend
        self.trainer = call(backend._julia, "train", self._setup, settings)

    def __del__(self):
        release(self.__dict__.pop("trainer", None), self.__dict__.pop("_step", None))

    def _setup(self, settings):
        flux = self.backend.flux
        self._step = flux.seval("train_step!")
        self._load = flux.seval("load_train_state!")
        return flux.train_setup(
            self.backend.model, lr=float(settings.lr), beta1=float(settings.betas[0]),
            beta2=float(settings.betas[1]), eps=float(settings.eps),
            weight_decay=float(settings.weight_decay), num_classes=int(settings.num_classes),
        )

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One Adam step on a batch; the loss and (N, classes) logits before it."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.int64)
        return call(self.backend._julia, "train", self._train_step, x, y)

    def _train_step(self, x: np.ndarray, y: np.ndarray):
        loss, logits = self._step(self.trainer, whcn_view(x), y)
        return float(loss), np.ascontiguousarray(np.asarray(logits.to_numpy()).T)

    def weights(self) -> dict[str, np.ndarray]:
        """The current weights, Flux layout."""
        return call(self._arrays, self.backend.flux.model_weights, self.backend.model)

    def state(self) -> dict[str, np.ndarray]:
        """Weights, Adam's moments and β powers, to resume from."""
        return call(self._arrays, self.backend.flux.train_state, self.trainer)

    @staticmethod
    def _arrays(fn, arg) -> dict[str, np.ndarray]:
        found = fn(arg)
        return {str(k): np.array(v.to_numpy(), dtype=np.float32) for k, v in found.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Put back what :meth:`state` returned."""
        call(self._load_state, state)

    def _load_state(self, state) -> None:
        for name in self.backend.arch.tensor_names():
            args = [np.ascontiguousarray(state[f"{part}.{name}"], dtype=np.float32)
                    for part in ("weights", "adam.m", "adam.v", "adam.beta_t")]
            # juliacall indexes a NumPy array as NumPy does: Flux-layout arrays go as they are.
            self._load(self.trainer, name, *args)
