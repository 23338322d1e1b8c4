"""Lazy planning: the images of a run are computed from their number, never listed.

A generator's ``plan(prompts)`` returns a sequence of :class:`ailusion.stages.ImageRequest`
(``len`` and indexing). :class:`Plan` is that sequence computed on demand from each image's
number, so planning ten million images costs what planning ten does; a shard's images are a
slice of it (``plan[shard::num_shards]``, itself lazy) and are enumerated without touching the
others. :func:`per_prompt` is the plan of the usual generator, ``n`` images per prompt. A plain
list of requests is a plan too (small runs, simple plugins).

What decides a plan is digested for the run's record (:func:`digest`): the prompts, and what the
plan says beside them (``Plan.inputs``, e.g. the folder generator's files) — not the requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from .stages import ImageRequest, Prompt


class Plan(Sequence):
    """The requests ``request(index)`` for the 1-based image numbers ``indices``.

    Args:
        count: how many images the run makes (``indices`` defaults to ``range(1, count + 1)``).
        request: ``request(index) -> ImageRequest``, pure arithmetic on the index: it must give
            the same request for the same index every time, in any process.
        classes: the run's class list, when the generator found one itself (folder subfolders);
            otherwise the prompts' is used.
        inputs: JSON-able values that decide the requests beside the config and the prompts
            (the files a folder holds), so a changed input is never resumed as the old run.
        images_per_prompt: how many images each prompt makes, when each makes the same number
            (``ailusion plan`` reports it).
    """

    def __init__(self, count: int, request: Callable[[int], ImageRequest], *,
                 classes: list[str] | None = None, inputs: Any = None,
                 indices: range | None = None, images_per_prompt: int | None = None):
        self.request, self.classes, self.inputs = request, classes, inputs
        self.images_per_prompt = images_per_prompt
        self.count = count
        self.indices = range(1, count + 1) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Plan(self.count, self.request, classes=self.classes, inputs=self.inputs,
                        indices=self.indices[i], images_per_prompt=self.images_per_prompt)
        return self.request(self.indices[i])

    def __contains__(self, request) -> bool:
        index = getattr(request, "index", None)
        return index in self.indices and self.request(index) == request

    def __repr__(self) -> str:
        return f"Plan({len(self)} of {self.count} images, indices={self.indices})"


def per_prompt(prompts: Sequence[Prompt], images_per_prompt: int, seed: int = 0,
               negative_prompt: str | None = None) -> Plan:
    """``images_per_prompt`` images of each prompt in turn: image ``i`` (1-based) is image
    ``k = (i - 1) % images_per_prompt`` of prompt ``(i - 1) // images_per_prompt``, with seed
    ``seed + i - 1``, or the prompt's own seed + ``k`` when it has one; ``negative_prompt`` for
    prompts without their own; the prompt's label."""

    def request(index: int) -> ImageRequest:
        p, k = divmod(index - 1, images_per_prompt)
        prompt = prompts[p]
        negative = negative_prompt if prompt.negative_prompt is None else prompt.negative_prompt
        own = seed + index - 1 if prompt.seed is None else prompt.seed + k
        return ImageRequest(index, prompt.text, negative, own, None, prompt.label,
                            prompt.label_id)

    return Plan(len(prompts) * images_per_prompt, request, images_per_prompt=images_per_prompt)


def batches(requests: Iterable[ImageRequest], size: int) -> Iterator[list[ImageRequest]]:
    """``requests`` in lists of ``size`` (the last may be shorter), read lazily."""
    iterator = iter(requests)
    while batch := list(islice(iterator, size)):
        yield batch


def request_of(requests: Sequence[ImageRequest]) -> Callable[[int], ImageRequest | None]:
    """``index -> request`` for the plan ``requests`` (None for an image it does not hold),
    without listing a :class:`Plan`."""
    if isinstance(requests, Plan):
        return lambda index: requests.request(index) if index in requests.indices else None
    parts = getattr(requests, "parts", None)  # a job's blocks of a plan, one after the other
    if parts is not None and all(isinstance(part, Plan) for part in parts):
        return lambda index: next((part.request(index) for part in parts
                                   if index in part.indices), None)
    return {r.index: r for r in requests}.get


class Remaining:
    """The requests of ``requests`` whose index is not in ``done``, produced as they are read;
    ``len`` is known without reading them."""

    def __init__(self, requests: Sequence[ImageRequest], done):
        self.requests, self.done = requests, done

    def __len__(self) -> int:
        return len(self.requests) - len(self.done)

    def __iter__(self) -> Iterator[ImageRequest]:
        return (r for r in self.requests if r.index not in self.done)


def digest(prompts: Sequence[Prompt], plan: Sequence[ImageRequest]) -> str:
    """sha256 of what decides ``plan`` beside the config: the prompts, and the plan's ``inputs``
    (a :class:`Plan`) or its requests (a list)."""
    sha = hashlib.sha256()
    for p in prompts:
        sha.update(json.dumps([p.text, p.negative_prompt, p.seed, p.label, p.label_id]).encode())
        sha.update(b"\n")
    sha.update(b"\0")
    if isinstance(plan, Plan):
        sha.update(json.dumps([plan.count, plan.classes, plan.inputs], sort_keys=True).encode())
    else:
        for r in plan:
            sha.update(json.dumps([r.index, r.prompt, r.negative_prompt, r.seed, r.source,
                                   r.label, r.label_id]).encode())
            sha.update(b"\n")
    return sha.hexdigest()


def run_classes(prompts: Sequence[Prompt], plan: Sequence[ImageRequest]) -> list[str] | None:
    """The run's class list: the plan's own (a generator that finds classes), else the prompts'."""
    own = getattr(plan, "classes", None)
    return own if own is not None else getattr(prompts, "classes", None)
