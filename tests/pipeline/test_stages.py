"""The stages' failure policy without Ray: `RayCalls` is injected as the loop injects `wait`."""

from __future__ import annotations

import pytest

from runner.checkpoints import Checkpoint
from runner.generation.engine import GenerationResult
from runner.graders.reasons import is_transient
from runner.graders.rules import Grading
from runner.grid import SamplingParams, WorkItem
from runner.pipeline.loop import AGAIN
from runner.pipeline.sources import Batch
from runner.pipeline.stages import GenerationStage, GradingStage, RayCalls


class CallFailed(Exception):
    pass


class ActorDied(CallFailed):
    pass


class Handle:
    """What a remote call returns: hashable, like a Ray ObjectRef."""

    def __init__(self, value):
        self.value = value


class FakeCalls(RayCalls):
    def get(self, handle):
        if isinstance(handle.value, BaseException):
            raise handle.value
        return handle.value

    def call_failed(self, e):
        return isinstance(e, CallFailed)

    def actor_died(self, e):
        return isinstance(e, ActorDied)

    def unavailable(self, e):
        return False


class Remote:
    def __init__(self, result):
        self.result = result

    def remote(self, *args):
        return Handle(self.result)


class FakeActor:
    """`.grade.remote(pairs)` / `.generate.remote(ckpt, items)` return a handle FakeCalls.get resolves."""

    def __init__(self, result):
        self.grade = self.generate = Remote(result)
        self.ping = Remote({"node": "n"})


CK = Checkpoint(model="m", name="checkpoint-1", step=1, path="", tokenizer="")


def _batch(n: int = 2) -> Batch:
    items = [WorkItem(item_id=f"i{k}", scenario="leaking", condition="c", model="m", checkpoint=CK.name,
                      checkpoint_step=1, seed=k, system="s", user="u", sampling=SamplingParams(1.0, 1.0, 8))
             for k in range(n)]
    return Batch(CK, items, results=[GenerationResult(it.item_id, "ok", "r") for it in items])


def _failed(item, why):
    return Grading(item.item_id, "rules", None, why, "[]", "[]")


def _grading_stage(result) -> GradingStage:
    return GradingStage("rules", [FakeActor(result)], 2, _failed, calls=FakeCalls())


def test_outputs_are_stored_by_grader_name():
    b = _batch()
    stage = _grading_stage([Grading(f"i{k}", "rules", False, None, "[]", "[]") for k in range(2)])
    assert stage.collect(0, stage.submit(0, b), b)
    assert [g.harmful for g in b.grades["rules"]] == [False, False]


def test_a_batch_whose_grader_died_is_graded_again_then_unscored_with_a_transient_reason():
    b = _batch()
    stage = _grading_stage(ActorDied("the actor died unexpectedly"))
    assert stage.collect(0, stage.submit(0, b), b) is AGAIN       # back to this stage, not to generation
    assert "rules" not in b.grades and stage.slots.deaths == [1] and stage.slots.recovering
    stage.slots.recovering.clear()                                 # as if Ray restarted it
    assert stage.collect(0, stage.submit(0, b), b) is AGAIN
    stage.slots.recovering.clear()
    assert stage.collect(0, stage.submit(0, b), b) is True         # max_retries=2 used up
    assert all(g.harmful is None and is_transient(g.unscored_reason) for g in b.grades["rules"])


def test_outputs_for_other_items_are_a_failure_not_a_mislabel():
    b = _batch()
    stage = _grading_stage([Grading("someone-else", "rules", True, None, "[]", "[]")] * 2)
    stage.collect(0, stage.submit(0, b), b)
    assert all(g.harmful is None and "do not match" in g.unscored_reason for g in b.grades["rules"])


def test_a_bug_in_the_driver_is_not_swallowed():
    b = _batch()
    stage = _grading_stage(KeyError("a bug, not a failed call"))
    with pytest.raises(KeyError):
        stage.collect(0, stage.submit(0, b), b)


def test_a_generation_batch_is_retried_then_becomes_error_rows():
    b = _batch()
    stage = GenerationStage([FakeActor(CallFailed("engine raised"))], 2, max_retries=1, calls=FakeCalls())
    assert stage.collect(0, stage.submit(0, b), b) is False       # back to the source for a retry
    b.attempt = 1
    assert stage.collect(0, stage.submit(0, b), b) is True
    assert [r.status for r in b.results] == ["error", "error"] and "gave up after 2 attempts" in b.results[0].error
    assert stage.slots.deaths == [0]                              # a failed call is not a dead actor
