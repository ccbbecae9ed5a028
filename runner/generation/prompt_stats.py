"""Prompt tokens sent to an engine vs computed by it, from vLLM's own counters.

Every seed of a condition sends the same prompt; vLLM's prefix cache serves seeds 2..N from the
blocks seed 1 computed when they are scheduled while those blocks are still cached. Whether that
happened is read from the engine, not assumed: vLLM's v1 engine reports, per step, the prompt
tokens it prefilled and how many of them came from the local prefix cache
(`IterationStats.prompt_token_stats`: total = computed + local_cache_hit + external), plus the
prefix-cache lookups (`SchedulerStats.prefix_cache_stats`: queries, hits).

`PromptTokenLogger` is a stat logger of vLLM's `StatLoggerBase` shape. It replaces the default
loggers of the `LLMEngine` (a periodic log line and Prometheus counters in a process-global
registry that an engine restart would re-register) and adds into a plain dict the runner already
ships back with every batch (`VllmBackend.counts`), so totals survive engine restarts and reach
the driver without another RPC. No vLLM import: tests drive it with plain objects.
"""

from __future__ import annotations

from typing import Any

# Keys added into the counts dict; the pipeline sums them over engines (GenerationStage).
PROMPT_TOKEN_KEYS = ("prompt_tokens_sent", "prompt_tokens_computed", "prompt_tokens_cached",
                     "prefix_cache_queries", "prefix_cache_hits")


class PromptTokenLogger:
    """Adds each engine step's prompt-token stats into `counts` (while `enabled`)."""

    def __init__(self, counts: dict[str, Any]):
        self.counts = counts
        self.enabled = True  # off while the backend runs its own probe prompts
        for k in PROMPT_TOKEN_KEYS:
            counts.setdefault(k, 0)

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
        if not self.enabled:
            return
        c = self.counts
        if iteration_stats is not None:
            p = iteration_stats.prompt_token_stats
            c["prompt_tokens_sent"] += p.total
            c["prompt_tokens_computed"] += p.computed
            c["prompt_tokens_cached"] += p.local_cache_hit
        stats = getattr(scheduler_stats, "prefix_cache_stats", None)
        if stats is not None:
            c["prefix_cache_queries"] += stats.queries
            c["prefix_cache_hits"] += stats.hits

    # The rest of vLLM's StatLoggerBase: nothing to print or export.
    def log(self) -> None:
        return None

    def log_engine_initialized(self) -> None:
        return None

    def record_sleep_state(self, is_awake: int = 0, level: int = 0) -> None:
        return None


def install_prompt_logger(llm_engine, logger: PromptTokenLogger) -> bool:
    """Make `logger` the engine's only stat logger. False when the engine keeps no stats (it was
    started with `disable_log_stats=True`, e.g. by a user's engine_kwargs): then nothing is counted."""
    manager = getattr(llm_engine, "logger_manager", None)
    if manager is None:
        return False
    manager.stat_loggers = [logger]
    return True


def prompt_token_summary(counts: dict[str, Any]) -> dict[str, float]:
    """The run-level figures: tokens sent and computed, and computed per token sent (1.0: the
    prefix cache saved nothing; 1/8: eight seeds paid for one prompt). Empty when nothing was counted."""
    sent = int(counts.get("prompt_tokens_sent", 0) or 0)
    if not sent:
        return {}
    computed = int(counts.get("prompt_tokens_computed", 0) or 0)
    return {"prompt_tokens_sent": sent, "prompt_tokens_computed": computed,
            "prompt_tokens_cached": int(counts.get("prompt_tokens_cached", 0) or 0),
            "prompt_computed_fraction": computed / sent}


def describe_prompt_tokens(figures: dict) -> str:
    """One line for the console: `prompt tokens: 1,234 computed of 9,872 sent (0.125; ...)`."""
    sent, computed = figures["prompt_tokens_sent"], figures["prompt_tokens_computed"]
    return (f"prompt tokens: {computed:,} computed of {sent:,} sent ({figures['prompt_computed_fraction']:.3f}; "
            f"{figures['prompt_tokens_cached']:,} from the prefix cache)")


__all__ = ["PROMPT_TOKEN_KEYS", "PromptTokenLogger", "describe_prompt_tokens", "install_prompt_logger",
           "prompt_token_summary"]
