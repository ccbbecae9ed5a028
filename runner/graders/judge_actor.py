"""The Ray actor around `JudgeGrader`: one judge engine per actor. Thin on purpose."""

from __future__ import annotations

import os
from typing import Sequence

from runner.checkpoints import Checkpoint
from runner.generation.engine import EngineDeadError, EngineSpec, GenerationResult
from runner.generation.openai_backend import ApiSpec
from runner.graders.judge import JudgeGrader, JudgeSpec, Judgment
from runner.grid import WorkItem


class JudgeActor:
    """Decorated with `ray.remote` by the judge pool. Loads the judge model once, at start."""

    def __init__(self, engine: EngineSpec, judge_model: Checkpoint, spec: JudgeSpec, rubrics: dict[str, str],
                 api: ApiSpec | None = None):
        """`api`: the judge is served by an OpenAI-compatible server (judge_model.path is its name)."""
        if api is not None:
            from runner.generation.openai_backend import OpenAIBackend

            backend = OpenAIBackend(api, where="grading.judge.api")
        else:
            from runner.generation.vllm_backend import VllmBackend

            backend = VllmBackend(engine)
        backend.load(judge_model)
        self.judge = JudgeGrader(backend, spec, rubrics)

    def ping(self) -> dict:
        return {"pid": os.getpid(), "bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}

    def judge_batch(self, pairs: Sequence[tuple[WorkItem, GenerationResult]]) -> list[Judgment]:
        try:
            return self.judge.grade(pairs)
        except EngineDeadError:
            os._exit(1)  # Ray restarts the actor with a fresh engine
