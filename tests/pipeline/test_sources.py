from __future__ import annotations

from runner.checkpoints import Checkpoint
from runner.grid import SamplingParams, WorkItem
from runner.pipeline.sources import GridSource as BatchScheduler


def _items(ckpt: Checkpoint, n: int):
    for i in range(n):
        yield WorkItem(f"{ckpt.name}-{i}", "f", "c", ckpt.model, ckpt.name, ckpt.step, i, "s", "u",
                       SamplingParams(1.0, 1.0, 8))


CKS = [Checkpoint("m", f"ck{s}", s, "/p", "/t") for s in (1, 2, 3)]


def test_engines_keep_their_checkpoint_then_take_unstarted_ones():
    s = BatchScheduler([(c, _items(c, 5)) for c in CKS], batch_size=2, is_done=lambda _: False)
    a = s.next_batch(None)
    b = s.next_batch(None)
    assert a.ckpt.key != b.ckpt.key  # the second engine starts another checkpoint
    again = s.next_batch(a.ckpt.key)
    assert again.ckpt.key == a.ckpt.key  # no switch while work remains on the loaded one


def test_done_items_are_skipped_and_completion_waits_for_in_flight():
    done = {"ck1-0", "ck1-1", "ck1-2"}
    s = BatchScheduler([(CKS[0], _items(CKS[0], 4))], batch_size=10, is_done=done.__contains__)
    b = s.next_batch(None)
    assert [i.item_id for i in b.items] == ["ck1-3"]
    assert s.skipped == 3
    assert s.next_batch(None) is None
    assert s.complete_checkpoints() == []  # still in flight
    s.finished(b)
    assert s.complete_checkpoints() == [CKS[0]]
    assert s.all_done()
    assert s.item_ids(CKS[0].key) == {f"ck1-{i}" for i in range(4)}


def test_retried_batches_come_first_and_keep_their_attempt_count():
    s = BatchScheduler([(CKS[0], _items(CKS[0], 4))], batch_size=2, is_done=lambda _: False)
    b = s.next_batch(None)
    s.retry(b)
    again = s.next_batch(None)
    assert again is b and again.attempt == 1
    assert not s.all_done()


def test_fully_done_checkpoint_completes_without_work():
    s = BatchScheduler([(CKS[0], _items(CKS[0], 3))], batch_size=2, is_done=lambda _: True)
    assert s.next_batch(None) is None
    assert s.complete_checkpoints() == [CKS[0]] and s.all_done()
