"""A generation backend that picks, per checkpoint, the local vLLM engine or an API server.

A sweep may mix local checkpoints with models served over an OpenAI-compatible API
(`models[].backend=openai`). Each generation actor holds one `RoutedBackend`: checkpoints of an
API-served model go to an `OpenAIBackend` for that model's server, everything else to the
actor's own `VllmBackend`, created on first use (so an API-only actor never imports vLLM).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from runner.checkpoints import Checkpoint
from runner.generation.engine import Completion, EngineSpec
from runner.generation.openai_backend import ApiSpec, OpenAIBackend
from runner.grid import WorkItem


class RoutedBackend:
    """The `Backend` protocol (engine.py), delegating to the backend of the loaded checkpoint."""

    def __init__(self, engine: EngineSpec, api_specs: Mapping[str, ApiSpec] | None = None):
        self.engine = engine
        self.api_specs = dict(api_specs or {})   # model name -> its server
        self.local: Any = None                   # VllmBackend, on first local checkpoint
        self.remote: dict[str, OpenAIBackend] = {}
        self.current: Any = None

    def _backend_for(self, ckpt: Checkpoint):
        spec = self.api_specs.get(ckpt.model)
        if spec is not None:
            if ckpt.model not in self.remote:
                self.remote[ckpt.model] = OpenAIBackend(spec, where=f"models '{ckpt.model}'.api")
            return self.remote[ckpt.model]
        if self.local is None:
            from runner.generation.vllm_backend import VllmBackend

            self.local = VllmBackend(self.engine)
        return self.local

    def load(self, ckpt: Checkpoint) -> None:
        backend = self._backend_for(ckpt)
        backend.load(ckpt)
        self.current = backend

    def use_adapter(self, ckpt: Checkpoint) -> None:
        self._backend_for(ckpt).use_adapter(ckpt)

    def prompt_length(self, messages: list[dict[str, str]], tools: list[dict] | None = None) -> int:
        return self.current.prompt_length(messages, tools)

    def complete(self, items: Sequence[WorkItem]) -> list[Completion]:
        return self.current.complete(items)

    @property
    def counts(self) -> dict:
        """The local engine's load counts (fresh vs swapped), as the pool's stats expect."""
        return dict(getattr(self.local, "counts", {}))
