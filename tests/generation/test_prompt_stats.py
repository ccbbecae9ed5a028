"""The prompt-token counter fed the shapes of vLLM's per-step stats (real vLLM: test_prefix_sharing_e2e.py)."""

from __future__ import annotations

from types import SimpleNamespace

from runner.generation.prompt_stats import (
    PromptTokenLogger,
    describe_prompt_tokens,
    install_prompt_logger,
    prompt_token_summary,
)


def _step(total, computed, hits, queries):
    it = SimpleNamespace(prompt_token_stats=SimpleNamespace(total=total, computed=computed, local_cache_hit=hits))
    sched = SimpleNamespace(prefix_cache_stats=SimpleNamespace(queries=queries, hits=hits))
    return sched, it


def test_steps_add_up_and_probes_are_left_out():
    counts = {"fresh": 1}
    logger = PromptTokenLogger(counts)
    logger.record(*_step(400, 400, 0, 400))
    logger.record(*_step(1200, 150, 1050, 1200))
    logger.record(SimpleNamespace(prefix_cache_stats=SimpleNamespace(queries=0, hits=0)), None)  # a decode-only step
    logger.enabled = False
    logger.record(*_step(99, 99, 0, 99))
    assert counts == {"fresh": 1, "prompt_tokens_sent": 1600, "prompt_tokens_computed": 550,
                      "prompt_tokens_cached": 1050, "prefix_cache_queries": 1600, "prefix_cache_hits": 1050}
    s = prompt_token_summary(counts)
    assert s["prompt_computed_fraction"] == 550 / 1600
    assert describe_prompt_tokens(s) == "prompt tokens: 550 computed of 1,600 sent (0.344; 1,050 from the prefix cache)"


def test_nothing_counted_gives_no_figures():
    assert prompt_token_summary({"fresh": 1}) == {}
    assert prompt_token_summary(PromptTokenLogger({}).counts) == {}


def test_the_logger_replaces_the_engines_default_loggers():
    engine = SimpleNamespace(logger_manager=SimpleNamespace(stat_loggers=["logging", "prometheus"]))
    logger = PromptTokenLogger({})
    assert install_prompt_logger(engine, logger)
    assert engine.logger_manager.stat_loggers == [logger]
    assert not install_prompt_logger(SimpleNamespace(logger_manager=None), logger)  # disable_log_stats=True
