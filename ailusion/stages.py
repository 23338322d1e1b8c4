"""The contracts between the pipeline and its three stages.

A plugin provides a stage by returning a *factory* from one of the registration hooks in
:mod:`ailusion.hookspecs`. The pipeline calls ``factory(config, context)`` with the stage's Hydra
config node and a :class:`StageContext`. Factories must be cheap: validate the config (raise
:class:`ailusion.errors.ConfigError` naming the key) and return; heavy imports (torch, diffusers,
juliacall) and model loading belong in ``setup()``, so that config errors are reported before any
work starts and without loading torch.

Data flows one way: prompts → generator → preprocessor → model. No stage sees another; the
pipeline passes values between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - imported for annotations only
    import numpy as np
    from omegaconf import DictConfig
    from PIL import Image


@dataclass(frozen=True)
class Prompt:
    """One prompt as read from ``prompts``, ``prompts_file`` or ``classes`` × ``prompt_templates``
    (a row's own seed wins). In a labelled run ``label`` is its true class and ``label_id`` that
    class's number in the run's class list."""

    text: str
    negative_prompt: str | None = None
    seed: int | None = None
    label: str | None = None
    label_id: int | None = None


@dataclass(frozen=True)
class ImageRequest:
    """One image to make. ``index`` is its 1-based number in the whole run: the image is saved as
    ``generated_image_{index}.png`` and keeps that number whatever the sharding or batching."""

    index: int
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    source: str | None = None  # file the image comes from (folder generator)
    label: str | None = None  # the true class, in a labelled run (its prompt's, or its folder's)
    label_id: int | None = None  # the class's number in the run's class list


@dataclass
class GeneratedImage:
    """What a generator yields: the request, an RGB image, and its provenance.

    ``info`` is the image's provenance (model, scheduler, num_inference_steps, guidance_scale,
    height, width, or anything else of the plugin's): every key becomes a column of the image's
    manifest row (``metadata.jsonl``), and of these, ``model``, ``scheduler``,
    ``num_inference_steps``, ``guidance_scale``, ``height`` and ``width`` are also written into
    the PNG's text chunks (beside ``prompt``, ``negative_prompt`` and ``seed``). Values must be
    JSON: str, int, float, bool, None, lists and dicts of them; NumPy scalars and arrays are
    converted. The columns ailusion writes itself (:data:`RESERVED_INFO_KEYS`) are refused.
    ``info["flagged"]`` is the exception: a short reason (``"nsfw"``, ``"nan"``) marks an image
    that must not be taken for a good one; left out, an all-black image is flagged ``"black"``;
    ``False`` opts out of that check.
    """

    request: ImageRequest
    image: Image.Image
    info: dict[str, Any] = field(default_factory=dict)


#: Manifest columns ailusion writes itself, which a generator's ``info`` must not set.
RESERVED_INFO_KEYS = (
    "file_name", "index", "prompt", "negative_prompt", "seed", "source", "label", "label_id",
    "prediction", "probability", "logits", "preprocessed_file_name", "preprocessing",
    "file_sha256", "preprocessed_file_sha256",
)


def check_info(plugin: str, info: dict) -> dict:
    """``info`` with NumPy values made plain Python; a reserved or non-string key, or a value
    that is not JSON, is an :class:`ailusion.errors.AilusionError` naming the plugin and key."""
    from .errors import AilusionError

    checked = {}
    for key, value in info.items():
        where = f"generator.plugin: plugin {plugin!r} put {key!r} in GeneratedImage.info"
        if not isinstance(key, str):
            raise AilusionError(f"{where}: its keys must be strings")
        if key in RESERVED_INFO_KEYS:
            raise AilusionError(f"{where}, a column ailusion writes itself (reserved: "
                                f"{', '.join(RESERVED_INFO_KEYS)})")
        try:
            checked[key] = _plain(value)
        except TypeError as exc:
            raise AilusionError(f"{where}: {exc}") from None
    return checked


def _plain(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":  # scalars and arrays
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__} is not JSON (str, number, bool, None, list, dict)")


def request_rng(request: ImageRequest, *streams: int):
    """A NumPy ``Generator`` drawn from this image's own seed (``request.seed``, or its index
    where the request has no seed), so that an image comes out the same whether it is made in
    one run, in a shard, alone after a resume or in a batch. ``streams`` (ints) give independent
    generators for one image: ``request_rng(r, 0)`` for the layout, ``request_rng(r, 1)`` for
    the noise. Never seed one generator in ``setup`` and draw from it across images: ``generate``
    gets only the images this job still has to make."""
    import numpy as np

    seed = request.seed if request.seed is not None else request.index
    return np.random.default_rng([seed, *streams]) if streams else np.random.default_rng(seed)


@dataclass
class StageContext:
    """What every stage factory receives beside its own config node."""

    config: DictConfig  # the whole composed config, read-only
    run_dir: Path
    job_num: int = 0  # the job's number in a Hydra multirun sweep (0 for a single run)


@runtime_checkable
class Generator(Protocol):
    """Turns prompts into images."""

    def plan(self, prompts: Sequence[Prompt]) -> Sequence[ImageRequest]:
        """Every image this generator makes for ``prompts``, in order, as a sequence computed
        from each image's number (:class:`ailusion.planning.Plan`,
        :func:`ailusion.planning.per_prompt`; a list for small plans). No heavy work: the run
        reads only its shard's requests, one by one."""

    def setup(self) -> None:
        """Load models; called once before the first ``generate``."""

    def generate(self, requests: Iterable[ImageRequest]) -> Iterator[GeneratedImage]:
        """Make the requested images (an iterable with ``len``, read once), yielding each as
        soon as it exists, in request order."""


@runtime_checkable
class Preprocessor(Protocol):
    """Turns images into the arrays a model eats."""

    #: (channels, height, width) of one preprocessed image, known from the config alone.
    output_shape: tuple[int, int, int]

    def settings(self) -> dict[str, Any]:
        """The settings that shape the output, written to the manifest."""

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return a (N, C, H, W) array for ``images``."""

    def to_image(self, array: np.ndarray) -> Image.Image:
        """Map one (C, H, W) output back to an 8-bit image for viewing."""


@runtime_checkable
class Model(Protocol):
    """Runs a forward pass on preprocessed batches."""

    #: one name per output; ``["0", "1", …]`` when the config gives none.
    labels: list[str]

    def setup(self, input_shape: tuple[int, int, int]) -> None:
        """Build or load the weights for (C, H, W) inputs; raise ``ConfigError`` when they
        cannot fit. Called before the generator's ``setup`` (so juliacall can load before torch)."""

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Return (N, len(labels)) logits for a (N, C, H, W) float32 batch."""

    def save(self, run_dir: Path) -> None:
        """Optional (a model without it saves nothing): write what reproduces the model (its
        weights) into ``run_dir``. Called once every stage is set up and the run starts writing,
        so a run that fails to start leaves nothing behind."""


@dataclass(frozen=True)
class TrainSettings:
    """How a model is to be trained (``conf/train/default.yaml``): Adam with learning rate ``lr``,
    ``betas``, ``eps``, and L2 ``weight_decay`` added to the gradient (torch's ``Adam`` and
    Optimisers.jl's ``OptimiserChain(WeightDecay(λ), Adam(η, β, ϵ))``), on a softmax
    cross-entropy loss (the batch mean) over ``num_classes`` outputs."""

    num_classes: int
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    threads: int | None = None  # intra-op threads (torch), or None to leave them as they are


@runtime_checkable
class TrainableModel(Model, Protocol):
    """A :class:`Model` that ``ailusion train`` can train. ``ailusion.training`` decides the
    batches and their order and hands each to ``train_step``; the model owns its weights and
    optimiser. A model without ``train_step`` is refused in one line before training starts.

    Call order: ``setup(input_shape)``, ``train_setup(settings)``, then any number of
    ``train_step`` and ``forward`` calls; ``train_state``/``load_train_state`` at epoch ends
    (to resume a killed run); ``save(run_dir)`` writes the trained weights, ``labels`` being the
    class names.
    """

    def train_setup(self, settings: TrainSettings) -> None:
        """Create the optimiser for the weights ``setup`` made (raise ``AilusionError`` with one
        line when this model cannot train as configured)."""

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One optimiser step on a (N, C, H, W) float32 batch ``x`` with (N,) int64 class ids
        ``y``; return the batch's mean loss and its (N, num_classes) logits, both from the
        forward pass the gradient was taken from (before the update)."""

    def train_state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly (weights and optimiser state), as arrays."""

    def load_train_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from what ``train_state`` returned (the same model, config and backend)."""
