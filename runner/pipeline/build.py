"""The pipeline's stages, built one way for `sweep`, `watch` and `grade`: generation (absent when
re-grading), then every registered grader that is enabled (`runner.graders.registry`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.checkpoints import Checkpoint
from runner.config import SweepConfig
from runner.generation.backends import BACKENDS
from runner.generation.specs import build_api_spec, build_engine_spec, inflight, resolve_device
from runner.graders.base import StageContext
from runner.graders.registry import GRADERS
from runner.pipeline.pools import build_generation_stage, build_grading_stage


@dataclass
class Stages:
    """The pipeline's stages in order; `generation` is None when re-grading stored replies."""

    generation: object | None
    graders: list = field(default_factory=list)
    device: str = "cpu"
    described: list[str] = field(default_factory=list)

    def ordered(self) -> list:
        return [s for s in (self.generation, *self.graders) if s is not None]

    def grader(self, name: str):
        return next((g for g in self.graders if g.name == name), None)

    def shutdown(self) -> None:
        for s in self.ordered():
            s.shutdown()


def build_stages(cfg: SweepConfig, *, pack_dirs: list[str], families: list[str], packs: list,
                 judge_model: Checkpoint | None, generation: bool, where: dict | None = None) -> Stages:
    """Start the stages' actors (Ray must be up). A cluster that cannot host them fails here,
    before anything is written; actors already started are stopped again."""
    device = resolve_device(cfg)
    g = cfg.generation
    stages = Stages(None, [], device)
    ctx = StageContext(cfg=cfg, device=device, packs=packs, pack_dirs=pack_dirs, families=families,
                       where=cfg.scenarios.where if where is None else where, judge_model=judge_model)
    graders = [(e, spec) for e in GRADERS.values() if (spec := e.stage(ctx)) is not None]
    try:
        if generation:
            api_specs = {m.name: build_api_spec(m.api, g.max_model_len)
                         for m in cfg.models if not BACKENDS[m.backend].serves_locally}
            engine = build_engine_spec(cfg, device)
            per_actor = g.cpu_threads_per_actor if device == "cpu" else g.tensor_parallel_size
            # An actor holds a local engine when any model needs one; then it reserves what that takes.
            local = [m for m in cfg.models if BACKENDS[m.backend].serves_locally]
            placement = BACKENDS[(local or cfg.models)[0].backend].placement(device, per_actor, engine.cpu_kv_cache_gib)
            stages.generation = build_generation_stage(
                engine, placement, num_actors=g.num_actors, batch_size=g.batch_size,
                max_inflight=inflight(g.max_inflight, device), max_retries=g.max_retries,
                reserved=sum(gs.reserves for _, gs in graders), api_specs=api_specs,
                api_only=len(api_specs) == len(cfg.models))
        for entry, spec in graders:
            stages.graders.append(build_grading_stage(entry, spec))
            stages.described.append(spec.describe or entry.name)
        return stages
    except BaseException:
        stages.shutdown()
        raise


__all__ = ["Stages", "build_stages"]
