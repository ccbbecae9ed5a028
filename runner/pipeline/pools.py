"""Building the stages' Ray actors from plain specs: how many, what each reserves, where its
cores are. Nothing here runs work; see stages.py and loop.py for that."""

from __future__ import annotations

import logging

from runner.checkpoints import Checkpoint
from runner.errors import ConfigError
from runner.generation.engine import EngineSpec
from runner.generation.openai_backend import ApiSpec
from runner.graders.judge import JudgeSpec
from runner.pipeline.ray_setup import ACTOR_RESTARTS, cpu_env, passthrough_env, wait_ready
from runner.pipeline.stages import GenerationStage, JudgeStage, RuleStage, batches_in_flight

log = logging.getLogger(__name__)

# CPUs an API-backed actor reserves: none. It only waits on HTTP; reserving even a fraction
# would leave it unplaceable when the auto-sized generation pool has taken every core.
API_ACTOR_CPUS = 0


def build_generation_stage(spec: EngineSpec, *, num_actors: int, per_actor: int, batch_size: int,
                           max_inflight: int, max_retries: int, reserved: int = 0,
                           api_specs: dict[str, ApiSpec] | None = None, api_only: bool = False) -> GenerationStage:
    """`per_actor`: cores per engine on CPU, GPUs (tensor_parallel_size) on CUDA. `reserved`:
    CPUs or GPUs other engines (the judge's) take from the cluster; the auto actor count
    (`num_actors=0`) leaves them free. `api_specs`: model name -> server, for models served over
    an OpenAI-compatible API; `api_only`: every model is, so the actors hold no engine."""
    import ray

    from runner.generation.actor import GenerationActor

    depth = batches_in_flight(max_inflight, batch_size)
    remote_cls = ray.remote(GenerationActor)
    common = dict(max_restarts=ACTOR_RESTARTS, max_task_retries=0, max_concurrency=depth + 1)
    if api_only:
        opts = [dict(num_cpus=API_ACTOR_CPUS, num_gpus=0, runtime_env={"env_vars": passthrough_env()})
                for _ in range(num_actors or 1)]
    else:
        cpu = spec.device == "cpu"
        unit, key = ("CPU", "cpu_threads_per_actor") if cpu else ("GPU", "tensor_parallel_size")
        have = int(ray.cluster_resources().get(unit, 0))
        n = num_actors or max(1, (have - reserved) // per_actor)
        if n * per_actor + reserved > have:
            judge = f" plus {reserved} for the judge (grading.judge)" if reserved else ""
            raise ConfigError(f"config error: generation.num_actors={n} x {key}={per_actor} needs "
                              f"{n * per_actor} {unit}s{judge}; the Ray cluster has {have}")
        if cpu:
            opts = [dict(num_cpus=per_actor, num_gpus=0, runtime_env={"env_vars": {
                **cpu_env(i, per_actor, spec.cpu_kv_cache_gib), **passthrough_env()}}) for i in range(n)]
        else:
            opts = [dict(num_cpus=1, num_gpus=per_actor, runtime_env={"env_vars": passthrough_env()})
                    for _ in range(n)]
    actors = [remote_cls.options(**common, **o).remote(spec, api_specs) for o in opts]
    nodes = wait_ready(actors, "generation")
    return GenerationStage(actors, depth, max_retries, nodes)


def build_rule_stage(num_actors: int, pack_dirs: list[str], families: list[str],
                     where: dict[str, list[str]], depth: int = 2) -> RuleStage:
    import ray

    from runner.graders.actor import GraderActor

    # Rule grading is light: it reserves no CPU, so it never waits for an engine's core.
    remote_cls = ray.remote(GraderActor)
    actors = [remote_cls.options(num_cpus=0, max_restarts=ACTOR_RESTARTS, max_task_retries=2)
              .remote(pack_dirs, families, where) for _ in range(num_actors)]
    wait_ready(actors, "grader")
    return RuleStage(actors, depth)


def build_judge_stage(*, num_actors: int, per_actor: int, batch_size: int, max_inflight: int,
                      engine: EngineSpec, judge_model: Checkpoint, spec: JudgeSpec, rubrics: dict[str, str],
                      first_core: int = 0, api: ApiSpec | None = None) -> JudgeStage:
    """Judge engines: their own actors and resources (CPU cores bound after generation's,
    from `first_core`). `per_actor`: cores per judge engine on CPU, GPUs on CUDA. `api`: the
    judge is served by an OpenAI-compatible server; its actors hold no engine."""
    import ray

    from runner.graders.judge_actor import JudgeActor

    depth = batches_in_flight(max_inflight, batch_size)
    if api is not None:
        opts = [dict(num_cpus=API_ACTOR_CPUS, num_gpus=0, runtime_env={"env_vars": passthrough_env()})
                for _ in range(num_actors)]
    elif engine.device == "cpu":
        opts = [dict(num_cpus=per_actor, num_gpus=0, runtime_env={"env_vars": {
            **cpu_env(i, per_actor, engine.cpu_kv_cache_gib, first_core), **passthrough_env()}})
            for i in range(num_actors)]
    else:
        opts = [dict(num_cpus=1, num_gpus=per_actor, runtime_env={"env_vars": passthrough_env()})
                for _ in range(num_actors)]
    remote_cls = ray.remote(JudgeActor)
    actors = [remote_cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=1, max_concurrency=depth + 1, **o)
              .remote(engine, judge_model, spec, rubrics, api) for o in opts]
    wait_ready(actors, "judge")
    return JudgeStage(actors, depth, spec.model)


__all__ = ["build_generation_stage", "build_judge_stage", "build_rule_stage"]
