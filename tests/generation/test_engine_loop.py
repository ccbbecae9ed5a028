"""EngineLoop with a fake stepped engine (unit level; the real vLLM engine runs in the e2e tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from runner.generation.engine_loop import EngineLoop, EngineLoopDead, Request


@dataclass
class _Out:
    request_id: str
    finished: bool
    text: str


class SteppedEngine:
    """Each request needs `params` steps; one step advances every running request by one."""

    def __init__(self, fail_at_step: int | None = None):
        self.left: dict[str, int] = {}
        self.prompts: dict[str, str] = {}
        self.running_per_step: list[int] = []
        self.fail_at_step = fail_at_step
        self.thread_ids: set[int] = set()

    def add_request(self, rid, prompt, params, lora_request=None):
        self.thread_ids.add(threading.get_ident())
        if prompt == "bad":
            raise ValueError("prompt rejected")
        self.left[rid] = params
        self.prompts[rid] = prompt

    def has_unfinished_requests(self):
        return bool(self.left)

    def step(self):
        self.thread_ids.add(threading.get_ident())
        if self.fail_at_step is not None and len(self.running_per_step) == self.fail_at_step:
            raise RuntimeError("engine core died")
        self.running_per_step.append(len(self.left))
        out = []
        for rid in list(self.left):
            self.left[rid] -= 1
            if self.left[rid] == 0:
                del self.left[rid]
                out.append(_Out(rid, True, f"done:{self.prompts.pop(rid)}"))
        time.sleep(0.001)
        return out


def _loop(engine) -> EngineLoop:
    loop = EngineLoop("test")
    loop.call(lambda: loop.attach(engine))
    return loop


def test_each_caller_gets_its_own_outputs_in_order():
    loop = _loop(SteppedEngine())
    outs = loop.generate([Request("a", 3), Request("b", 1), Request("c", 2)])
    assert [o.text for o in outs] == ["done:a", "done:b", "done:c"]
    loop.close()


def test_later_batches_join_while_earlier_ones_decode():
    """Two callers, one long batch and one short one started later: the short one finishes
    while the long one is still decoding, and at some step both batches ran together."""
    engine = SteppedEngine()
    loop = _loop(engine)
    done = {}

    def run(name, reqs):
        done[name] = (loop.generate(reqs), time.monotonic())

    long = threading.Thread(target=run, args=("long", [Request(f"L{i}", 200) for i in range(4)]))
    long.start()
    time.sleep(0.02)
    run("short", [Request(f"S{i}", 5) for i in range(4)])
    assert "long" not in done  # the short batch did not wait for the long one to drain
    long.join()
    assert max(engine.running_per_step) == 8
    assert [o.text for o in done["long"][0]] == [f"done:L{i}" for i in range(4)]
    loop.close()


def test_a_rejected_request_is_its_own_error_and_the_others_finish():
    loop = _loop(SteppedEngine())
    outs = loop.generate([Request("a", 2), Request("bad", 1), Request("c", 1)])
    assert outs[0].text == "done:a" and outs[2].text == "done:c"
    assert isinstance(outs[1], ValueError)
    loop.close()


def test_call_waits_for_requests_in_flight_and_runs_on_the_loop_thread():
    engine = SteppedEngine()
    loop = _loop(engine)
    seen = []
    t = threading.Thread(target=lambda: loop.generate([Request("x", 50)]))
    t.start()
    time.sleep(0.01)
    loop.call(lambda: seen.append((loop.inflight, threading.get_ident())))
    t.join()
    assert seen[0][0] == 0                       # drained before the call ran
    assert engine.thread_ids == {seen[0][1]}      # engine only ever touched by the loop thread
    loop.close()


def test_a_failed_step_fails_everything_in_flight_and_later_requests():
    loop = _loop(SteppedEngine(fail_at_step=3))
    outs = loop.generate([Request("a", 10), Request("b", 10)])
    assert all(isinstance(o, RuntimeError) for o in outs)
    with pytest.raises(EngineLoopDead):
        loop.generate([Request("c", 1)])
