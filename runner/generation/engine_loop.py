"""An engine that never drains between batches: one thread owns it and steps it continuously.

`vllm.LLM.generate` adds a batch, steps the engine until every request of that batch has
finished, and returns: the tail of each batch runs with few sequences while the next batch
waits. `EngineLoop` instead keeps one thread stepping the engine (`LLMEngine.step`) for as long
as any request is unfinished, and lets other threads add requests at any time
(`LLMEngine.add_request`): requests of later batches join the running batch while earlier ones
decode (continuous batching across batches). Each caller gets back exactly its own requests'
outputs, matched by request id, as soon as they have all finished.

Why a thread that owns the engine rather than vLLM's async engine: `AsyncLLM` always runs the
engine core in a separate process, and on CPU that start costs 30-50 s against 3-5 s for the
in-process engine (`VLLM_ENABLE_V1_MULTIPROCESSING=0`). The sync `LLMEngine` with `add_request`
and `step` is the same API on the CPU build and on CUDA (where vLLM runs its core in a
background process by default and `step` only exchanges messages with it), so this is one code
path for both. Everything that touches the engine (creating it, stepping it, swapping weights,
tokenizer-free admin calls) runs on the loop thread: vLLM's engine is not thread-safe, and on CPU
the OpenMP threads that do the compute belong to the thread that runs it.

Plain Python with no vLLM import: the engine is whatever `attach` is given; unit tests drive the
loop with a fake engine that has `add_request`, `step` and `has_unfinished_requests`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One request to add: what `LLMEngine.add_request` takes besides the request id."""

    prompt: Any
    params: Any
    lora: Any = None


@dataclass
class _Submit:
    requests: Sequence[Request]
    futures: list[Future]


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future


_STOP = object()


class EngineLoop:
    """Owns one engine on one thread. `generate` from any thread; `call` for everything else.

    `call(fn)` runs `fn()` on the loop thread once every request in flight has finished (new
    requests wait behind it): that is how an engine is created, closed, or has its weights
    swapped, and the only place requests are ever drained.
    """

    def __init__(self, name: str = "engine"):
        self.engine = None                      # set by `attach` (from inside a `call`)
        self._cmds: queue.Queue = queue.Queue()
        self._inflight: dict[str, Future] = {}
        self._ids = itertools.count()
        self._dead: BaseException | None = None
        self.steps = 0
        self.peak_inflight = 0
        self._thread = threading.Thread(target=self._run, name=f"{name}-loop", daemon=True)
        self._thread.start()

    # -- the caller side ----------------------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` on the loop thread after in-flight requests finish; return its result."""
        fut: Future = Future()
        self._put(_Call(fn, fut))
        return fut.result()

    def generate(self, requests: Sequence[Request]) -> list[Any]:
        """Add `requests` now, wait until all have finished; outputs (or the exception raised
        while adding that request) in input order."""
        if not requests:
            return []
        futures = [Future() for _ in requests]
        self._put(_Submit(requests, futures))
        out = []
        for f in futures:
            try:
                out.append(f.result())
            except Exception as e:  # noqa: BLE001 -- per request: one bad prompt is one error
                out.append(e)
        return out

    def attach(self, engine) -> None:
        """Make `engine` the one stepped (call from inside `call`); None detaches it."""
        self.engine = engine

    def close(self) -> None:
        self._cmds.put(_STOP)
        self._thread.join(timeout=60)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def _put(self, cmd) -> None:
        if self._dead is not None:
            raise EngineLoopDead(f"the engine failed earlier: {self._dead}")
        self._cmds.put(cmd)

    # -- the loop thread ----------------------------------------------------------------------
    def _run(self) -> None:
        waiting_call: _Call | None = None
        while True:
            busy = bool(self._inflight)
            # Take commands: block only when there is nothing to step.
            while waiting_call is None:
                try:
                    cmd = self._cmds.get(block=not busy)
                except queue.Empty:
                    break
                if cmd is _STOP:
                    self._fail_all(EngineLoopDead("engine loop stopped"))
                    return
                if isinstance(cmd, _Call):
                    waiting_call = cmd  # runs once the requests in flight have finished
                    break
                self._add(cmd)
                busy = bool(self._inflight)
            if waiting_call is not None and not self._inflight:
                call, waiting_call = waiting_call, None
                try:
                    call.future.set_result(call.fn())
                except BaseException as e:  # noqa: BLE001 -- handed to the caller
                    call.future.set_exception(e)
                continue
            if self._inflight:
                self._step()

    def _add(self, cmd: _Submit) -> None:
        for req, fut in zip(cmd.requests, cmd.futures):
            rid = str(next(self._ids))
            try:
                if self.engine is None:
                    raise RuntimeError("no engine loaded")
                self.engine.add_request(rid, req.prompt, req.params, lora_request=req.lora)
            except Exception as e:  # noqa: BLE001 -- e.g. a prompt the engine rejects
                fut.set_exception(e)
                continue
            self._inflight[rid] = fut
        self.peak_inflight = max(self.peak_inflight, len(self._inflight))

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except BaseException as e:  # noqa: BLE001 -- a failed step leaves the engine unusable
            log.error("engine step failed: %s", e)
            self._dead = e
            self._fail_all(EngineLoopDead(f"engine step failed: {type(e).__name__}: {e}"))
            self._drain_commands(e)
            return
        self.steps += 1
        for out in outputs:
            if getattr(out, "finished", False):
                fut = self._inflight.pop(out.request_id, None)
                if fut is not None:
                    fut.set_result(out)
        if not outputs and self._inflight and not self.engine.has_unfinished_requests():
            # The engine lost requests it was given: fail them rather than spin forever.
            lost = len(self._inflight)
            self._fail_all(RuntimeError(f"the engine finished without returning {lost} request(s)"))

    def _fail_all(self, e: BaseException) -> None:
        for fut in self._inflight.values():
            fut.set_exception(e)
        self._inflight.clear()

    def _drain_commands(self, e: BaseException) -> None:
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return
            futures = cmd.futures if isinstance(cmd, _Submit) else [cmd.future] if isinstance(cmd, _Call) else []
            for f in futures:
                f.set_exception(EngineLoopDead(f"the engine failed earlier: {e}"))


class EngineLoopDead(RuntimeError):
    """A step raised: the engine cannot serve more requests."""


__all__ = ["EngineLoop", "EngineLoopDead", "Request"]
