"""Generation on one engine, as a plain class (the Ray actor in `actor.py` is a thin wrapper).

`Generator` owns one backend (a vLLM engine, or a fake in unit tests), switches it between
checkpoints, and turns a batch of WorkItems into one GenerationResult per item, matched by
item_id. A batch that raises is retried item by item, so one bad prompt costs one `error` row,
not the batch. An engine that died is reported as `EngineDeadError` so the actor can restart.

Several batches run at once (the actor calls `generate` from several threads): their requests
share the engine (see engine_loop.py). A batch of another checkpoint waits at the
`CheckpointGate` until the batches of the loaded one have finished, then loads it: the only
moment an engine drains. The gate admits by engine group (adapters.py): batches of LoRA
adapters of the loaded base model run side by side, each request with its own adapter.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from runner.checkpoints import Checkpoint
from runner.generation.adapters import engine_group
from runner.grid import WorkItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """Plain engine settings an actor receives (built from GenerationConfig by the pool)."""

    device: str = "cpu"                 # cpu | cuda
    tensor_parallel_size: int = 1
    cpu_threads: int = 1                # cores per CPU engine, claimed on the actor's node (generation/cores.py)
    dtype: str = "float32"
    max_model_len: int = 4096
    cpu_kv_cache_gib: int = 1
    gpu_memory_utilization: float = 0.9
    max_retries: int = 2
    # Swap weights in place between checkpoints of one architecture (verified once per architecture).
    weight_swap: bool = True
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    # Where remote checkpoints (URIs) are copied before loading: `<cache_dir>/remote/` on the
    # actor's own node. Expanded on that node (`~` is the node's home).
    cache_dir: str = "~/.cache/misalign-runner"
    # Native tool calls: auto | none | a vLLM tool parser name (runner/generation/tool_calls.py).
    tool_parser: str = "auto"
    # LoRA adapters one engine runs side by side (vLLM's max_loras): adapters of one base model.
    max_loras: int = 4


@dataclass(frozen=True)
class GenerationResult:
    item_id: str
    status: str                         # ok | error
    response: str = ""
    error: str | None = None
    num_output_tokens: int = 0
    finish_reason: str | None = None
    # Tool calls parsed at generation (the model's own format, by its vLLM tool parser, or the
    # OpenAI API's `tool_calls`); None: not parsed here, the rule grader parses the text.
    tool_calls: tuple | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    num_output_tokens: int
    finish_reason: str | None
    tool_calls: tuple | None = None     # see GenerationResult.tool_calls


class PromptTooLongError(ValueError):
    pass


class EngineDeadError(RuntimeError):
    """The engine cannot serve any more requests; the actor must be restarted."""


class Backend(Protocol):
    """What a Generator needs from an inference engine."""

    def load(self, ckpt: Checkpoint) -> None: ...

    def use_adapter(self, ckpt: Checkpoint) -> None:
        """Serve LoRA checkpoint `ckpt` beside the adapters already in use (its base model is loaded)."""

    def prompt_length(self, messages: list[dict[str, str]], tools: list[dict] | None = None) -> int: ...

    def complete(self, items: Sequence[WorkItem]) -> list[Completion]: ...


class CheckpointGate:
    """Lets any number of batches of the loaded checkpoint run at once; a batch of another
    checkpoint waits until they have finished, loads its own, and runs. Once such a batch is
    waiting, new batches of the old checkpoint wait too, so a switch is never starved."""

    def __init__(self):
        self._cond = threading.Condition()
        self.loaded = None
        self._active = 0
        self._loading = False
        self._loading_ckpt = None
        self._switch_waiting = 0

    @contextmanager
    def hold(self, ckpt, load: Callable[[Any], None]):
        with self._cond:
            waiting = False  # counted in _switch_waiting: wants a checkpoint not loaded nor loading
            while True:
                if not self._loading and (self.loaded == ckpt or self._active == 0):
                    if waiting:
                        waiting = False
                        self._switch_waiting -= 1
                        if not self._switch_waiting:
                            self._cond.notify_all()  # batches held back for this switch may go
                    must_load = self.loaded != ckpt
                    if must_load or not self._switch_waiting:
                        break
                elif (self._loading_ckpt if self._loading else self.loaded) != ckpt and not waiting:
                    waiting = True
                    self._switch_waiting += 1
                self._cond.wait()
            if must_load:
                self._loading, self._loading_ckpt = True, ckpt
            else:
                self._active += 1
        if must_load:
            try:
                load(ckpt)
            except BaseException:
                with self._cond:
                    self.loaded, self._loading = None, False
                    self._cond.notify_all()
                raise
            with self._cond:
                self.loaded, self._loading = ckpt, False
                self._active += 1
                self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


class Generator:
    """One engine, many batches. Engine start-up is paid when the checkpoint changes, not per batch.

    Thread-safe: the actor runs several `generate` calls at once (requests in flight)."""

    def __init__(self, backend: Backend, spec: EngineSpec):
        self.backend = backend
        self.spec = spec
        self.gate = CheckpointGate()
        self.load_seconds: list[float] = []
        self.fallbacks = 0  # batches that raised and were redone item by item

    @property
    def loaded(self):
        """The engine group loaded (adapters.engine_group): a Checkpoint, or a base model's adapters."""
        return self.gate.loaded

    def _load(self, ckpt: Checkpoint) -> None:
        t0 = time.perf_counter()
        self.backend.load(ckpt)
        self.load_seconds.append(time.perf_counter() - t0)

    def generate(self, ckpt: Checkpoint, items: Sequence[WorkItem]) -> list[GenerationResult]:
        with self.gate.hold(engine_group(ckpt), lambda _group: self._load(ckpt)):
            if ckpt.adapter:
                self.backend.use_adapter(ckpt)  # one more adapter on the running engine: no drain
            return self._generate_loaded(items)

    def _generate_loaded(self, items: Sequence[WorkItem]) -> list[GenerationResult]:
        results: dict[str, GenerationResult] = {}
        runnable = []
        for it in items:
            try:
                # Rendered ahead (pretokenize.py), or by the backend; the tools are in the prompt too.
                n = len(it.prompt_ids) if it.prompt_ids else self.backend.prompt_length(it.messages(), it.tool_list())
            except EngineDeadError:
                raise
            except Exception as e:  # noqa: BLE001 -- e.g. a chat template that rejects this prompt
                results[it.item_id] = GenerationResult(it.item_id, "error", error=f"{type(e).__name__}: {e}"[:2000])
                continue
            # vLLM needs room for at least one generated token.
            if n >= self.spec.max_model_len:
                results[it.item_id] = GenerationResult(
                    it.item_id, "error",
                    error=f"prompt is {n} tokens; generation.max_model_len is {self.spec.max_model_len}")
            else:
                runnable.append(it)
        if runnable:
            try:
                for it, c in zip(runnable, self._complete_checked(runnable)):
                    results[it.item_id] = _ok(it, c)
            except EngineDeadError:
                raise
            except Exception as e:  # isolate the failing item(s); the rest still succeed
                log.warning("batch of %d failed (%s); retrying item by item", len(runnable), e)
                self.fallbacks += 1
                for it in runnable:
                    results[it.item_id] = self._generate_one(it)
        return [results[it.item_id] for it in items]

    def _complete_checked(self, items: Sequence[WorkItem]) -> list[Completion]:
        out = self.backend.complete(items)
        if len(out) != len(items):
            raise RuntimeError(f"backend returned {len(out)} completions for {len(items)} prompts")
        return out

    def _generate_one(self, it: WorkItem) -> GenerationResult:
        last = ""
        for _ in range(1 + self.spec.max_retries):
            try:
                return _ok(it, self._complete_checked([it])[0])
            except EngineDeadError:
                raise
            except Exception as e:
                last = f"{type(e).__name__}: {e}"
                log.debug("item %s failed: %s", it.item_id, traceback.format_exc())
        return GenerationResult(it.item_id, "error", error=last[:2000])


def _ok(it: WorkItem, c: Completion) -> GenerationResult:
    return GenerationResult(it.item_id, "ok", response=c.text, num_output_tokens=c.num_output_tokens,
                            finish_reason=c.finish_reason, tool_calls=c.tool_calls)
