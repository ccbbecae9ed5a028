"""Prefix sharing on real vLLM (CPU): the seeds of one condition pay for their prompt once.

The counts come from vLLM's own per-step stats (runner/generation/prompt_stats.py); with
prefix caching off the same requests compute every prompt token, so the figure is not one the
counter could produce whatever the engine did.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from runner.checkpoints import discover_checkpoints
from runner.config import ModelConfig, SamplingConfig
from runner.demo import ensure_demo_run
from runner.generation.pretokenize import PromptTokenizer
from runner.grid import expand_grid
from runner.plan import BUILTIN_SCENARIOS
from runner.scenarios import load_packs
from tests.generation.engines import CPU_SPEC, cpu_engine_env  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("cpu_engine_env")]

SEEDS = 8


def _items(ckpt):
    packs = load_packs([BUILTIN_SCENARIOS], ["blackmail"])
    items = list(expand_grid(packs, {}, [ckpt], SamplingConfig(seeds=SEEDS, max_tokens=4)))[:3 * SEEDS]
    return items


@pytest.mark.parametrize("caching", [True, False], ids=["prefix-cache", "no-prefix-cache"])
def test_seeds_of_a_condition_compute_their_prompt_once(tmp_path_factory, caching):
    from runner.generation.vllm_backend import VllmBackend

    run = ensure_demo_run(tmp_path_factory.mktemp("run"), steps=(100,), planted=None)
    ckpt = discover_checkpoints(ModelConfig(name="m", path=str(run)))[0]
    items = _items(ckpt)
    spec = replace(CPU_SPEC, max_model_len=4096,
                   engine_kwargs={**CPU_SPEC.engine_kwargs, "enable_prefix_caching": caching})
    backend = VllmBackend(spec)
    # Half the prompts rendered ahead, as a sweep's source does: the same ids as the engine's own render.
    ahead = PromptTokenizer(lambda _: True)
    items = ahead.prepare(ckpt, items[:len(items) // 2]) + items[len(items) // 2:]
    assert ahead.rendered == 2  # 12 items of 2 conditions: once per condition, not per seed
    try:
        backend.load(ckpt)
        for it in items[:len(items) // 2]:
            assert list(it.prompt_ids) == backend._prompt_ids(it.messages(), it.tool_list())
        sent = sum(backend.prompt_length(it.messages(), it.tool_list()) for it in items)
        backend.complete(items)
        c = dict(backend.counts)
    finally:
        backend.close()
    assert c["prompt_tokens_sent"] == sent  # vLLM counted exactly the prompts sent
    assert c["prompt_tokens_computed"] + c["prompt_tokens_cached"] == sent
    if caching:
        # 3 conditions x 8 seeds: about 3 prompts' worth computed (plus a partial block per seed).
        assert c["prompt_tokens_computed"] <= 1.2 * sent / SEEDS
        assert c["prefix_cache_hits"] == c["prompt_tokens_cached"]
    else:
        assert c["prompt_tokens_computed"] == sent
