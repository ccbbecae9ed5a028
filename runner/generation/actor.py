"""The Ray actor around `Generator`: one per engine. Thin on purpose; the logic is testable without Ray."""

from __future__ import annotations

import os
import time
from typing import Sequence

from runner.checkpoints import Checkpoint
from runner.generation.cores import bind_cpu_engine
from runner.generation.engine import EngineDeadError, EngineSpec, GenerationResult, Generator
from runner.generation.openai_backend import ApiSpec
from runner.grid import WorkItem


class GenerationActor:
    """Decorated with `ray.remote` by the pool (so importing this module does not import Ray).

    A threaded actor (`max_concurrency`): several `generate` calls run at once and their requests
    share the engine; see `Generator` and `EngineLoop`."""

    def __init__(self, spec: EngineSpec, api_specs: dict[str, ApiSpec] | None = None, api_only: bool = False):
        """`api_specs`: model name -> its OpenAI-compatible server, for API-served models."""
        if spec.device == "cpu" and not api_only:
            bind_cpu_engine(spec.cpu_threads)  # this node's cores, before vLLM is imported
        if api_specs:
            from runner.generation.routing import RoutedBackend

            backend = RoutedBackend(spec, api_specs)
        else:
            from runner.generation.vllm_backend import VllmBackend

            backend = VllmBackend(spec)
        self.generator = Generator(backend, spec)

    def ping(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": os.uname().nodename,
                "node_id": ray.get_runtime_context().get_node_id(),
                "bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}

    def engine_stats(self) -> dict:
        """How full the engine has been: the most requests it held at once, and steps taken."""
        backend = self.generator.backend
        loop = getattr(backend, "loop", None) or getattr(getattr(backend, "local", None), "loop", None)
        return {"peak_inflight": loop.peak_inflight if loop else 0, "steps": loop.steps if loop else 0}

    def generate(self, ckpt: Checkpoint, items: Sequence[WorkItem]) -> tuple[list[GenerationResult], dict]:
        t0 = time.perf_counter()
        try:
            results = self.generator.generate(ckpt, items)
        except EngineDeadError:
            # Let Ray restart this actor with a fresh engine; the driver resubmits its batches.
            os._exit(1)
        stats = {
            "seconds": time.perf_counter() - t0,
            "output_tokens": sum(r.num_output_tokens for r in results),
            # Cumulative per actor: batches overlap, so per-batch deltas would count a load twice.
            "load_seconds": sum(self.generator.load_seconds),
            "fallbacks": self.generator.fallbacks,
            "engine": dict(getattr(self.generator.backend, "counts", {})),
        }
        return results, stats
