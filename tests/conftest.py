"""Shared fixtures. End-to-end tests share one local Ray and one demo run per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The demo RL run, built offline into a session directory: tokenizer + 4 checkpoints whose
    planted blackmail rates fall 0.8, 0.5, 0.2, 0.0 (replies are a few tokens long)."""
    from runner.demo import ensure_demo_run

    return ensure_demo_run(tmp_path_factory.mktemp("cache"), scenarios_dir=REPO / "scenarios")


@pytest.fixture(scope="session")
def random_run(tmp_path_factory) -> Path:
    """Random-weight checkpoints 100..300 of the demo model: replies run to max_tokens, so a
    sweep lasts long enough to be interrupted mid-way."""
    from runner.demo import ensure_demo_run

    return ensure_demo_run(tmp_path_factory.mktemp("cache-random"), scenarios_dir=REPO / "scenarios",
                           steps=(100, 200, 300), planted=None)


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the session (2 CPUs, as on CI)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path:
    """A cache_dir holding builtin:smollm2-135m-instruct, converted once per session (~20-60 s)."""
    from runner.builtins import SMOLLM2, ensure_builtin

    cache = tmp_path_factory.mktemp("cache-smollm2")
    ensure_builtin(SMOLLM2, cache)
    return cache
