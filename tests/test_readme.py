"""The README's commands run offline as written, or their line says they need a real model."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ailusion.api import compose_config
from ailusion.errors import AilusionError

ROOT = Path(__file__).resolve().parents[1]
MARK = "needs a real model"
NOT_RUNS = ("plugins", "merge", "train", "evaluate", "digits", "plan", "--help", "--version", "-sc")


def readme_runs() -> list[str]:
    """Every ``ailusion …`` line of the README's bash blocks that runs a pipeline (continuation
    lines joined)."""
    return [line for line, _ in readme_lines()]


def readme_lines() -> list[tuple[str, bool]]:
    """(line, whether a ``pip install`` comes before it in its block) for every run line."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        installs = False
        for line in block.replace("\\\n", " ").splitlines():
            words = line.split()
            installs = installs or words[:2] == ["pip", "install"]
            if words[:1] == ["ailusion"] and (len(words) == 1 or words[1] not in NOT_RUNS):
                lines.append((line.strip(), installs))
    return lines


def overrides(line: str) -> list[str]:
    """The line's config overrides, each sweep reduced to its first value."""
    command = line.split(" # ")[0]
    found = []
    for word in shlex.split(command)[1:]:
        if word.startswith("-") or word.startswith("hydra"):
            continue
        key, _, value = word.partition("=")
        if value and not value.startswith("["):
            value = first_value(key, value)
        found.append(f"{key}={value}")
    return found


def first_value(key: str, value: str):
    """A sweep's first value: a choice's first, an interval's start (Optuna's
    ``interval(0,30)``, ``tag(log, interval(…))``), a range's first."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    parsed = OverridesParser.create().parse_override(f"{key}={value}")
    if not parsed.is_sweep_override():
        return value
    if isinstance(parsed.value(), IntervalSweep):
        return parsed.value().start
    return next(iter(parsed.sweep_string_iterator()))


def test_the_readme_has_runs_to_check():
    assert len(readme_runs()) >= 10


@pytest.mark.parametrize("line", readme_runs())
def test_a_readme_run_is_offline_or_says_it_needs_a_real_model(line):
    if MARK in line:
        return
    try:
        config = compose_config(overrides(line))
    except AilusionError as exc:
        if dict(readme_lines())[line]:  # after a `pip install` of its block: maybe not done here
            pytest.skip(f"needs what its README block installs first: {exc}")
        pytest.fail(f"README: `{line}` does not run: {exc}")
    generator = config.generator
    offline = generator.plugin != "stable_diffusion" or generator.model == "tiny"
    assert offline, f"README: `{line}` loads {generator.model} from the Hub; add generator=tiny " \
                    f"or a comment `# {MARK}`"
