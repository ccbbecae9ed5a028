"""Starting the stages' Ray actors from plain specs: how many, what each reserves. Nothing here
runs work; see stages.py and loop.py for that."""

from __future__ import annotations

import logging

from runner.errors import ConfigError
from runner.generation.backends import Placement
from runner.generation.engine import EngineSpec
from runner.generation.openai_backend import ApiSpec
from runner.graders.base import GraderEntry, GraderStageSpec
from runner.pipeline.ray_setup import ACTOR_RESTARTS, wait_ready
from runner.pipeline.stages import GenerationStage, GradingStage, batches_in_flight

log = logging.getLogger(__name__)


def build_generation_stage(spec: EngineSpec, placement: Placement, *, num_actors: int, batch_size: int,
                           max_inflight: int, max_retries: int, reserved: int = 0,
                           api_specs: dict[str, ApiSpec] | None = None, api_only: bool = False) -> GenerationStage:
    """`placement`: what one engine actor reserves (cores on CPU, GPUs on CUDA, nothing for API
    servers). `reserved`: CPUs or GPUs other engines (the judge's) take from the cluster; the auto
    actor count (`num_actors=0`) leaves them free. `api_specs`: model name -> server, for models
    served over an OpenAI-compatible API; `api_only`: every model is, so the actors hold no engine."""
    import ray

    from runner.generation.actor import GenerationActor

    depth = batches_in_flight(max_inflight, batch_size)
    if api_only or not placement.unit:
        n = num_actors or 1
    else:
        have = int(ray.cluster_resources().get(placement.unit, 0))
        n = num_actors or max(1, (have - reserved) // placement.per_actor)
        if n * placement.per_actor + reserved > have:
            key = "cpu_threads_per_actor" if placement.unit == "CPU" else "tensor_parallel_size"
            judge = f" plus {reserved} for the judge (grading.judge)" if reserved else ""
            raise ConfigError(f"config error: generation.num_actors={n} x {key}={placement.per_actor} needs "
                              f"{n * placement.per_actor} {placement.unit}s{judge}; the Ray cluster has {have}")
    remote_cls = ray.remote(GenerationActor)
    opts = placement.actor_options()
    actors = [remote_cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=0, max_concurrency=depth + 1,
                                 **opts).remote(spec, api_specs, api_only) for _ in range(n)]
    nodes = wait_ready(actors, "generation")
    return GenerationStage(actors, depth, max_retries, nodes)


def build_grading_stage(entry: GraderEntry, spec: GraderStageSpec) -> GradingStage:
    """One registered grader's actors (`runner.graders.actor.GradingActor`), started and ready."""
    import ray

    from runner.graders.actor import GradingActor

    remote_cls = ray.remote(GradingActor)
    actors = [remote_cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=spec.max_task_retries,
                                 max_concurrency=spec.depth + 1 if spec.threaded else 1, **opts).remote(entry.make, spec.make_kwargs)
              for opts in spec.actor_options]
    wait_ready(actors, entry.name)
    return GradingStage(entry.name, actors, spec.depth, spec.failed)


__all__ = ["build_generation_stage", "build_grading_stage"]
