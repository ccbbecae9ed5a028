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


def _grid(ckpt: Checkpoint, conditions: int, seeds: int):
    for c in range(conditions):
        for seed in range(seeds):
            yield WorkItem(f"{ckpt.name}-c{c}-s{seed}", "f", f"c{c}", ckpt.model, ckpt.name, ckpt.step, seed, "s",
                           f"u{c}", SamplingParams(1.0, 1.0, 8))


def _drain(s: BatchScheduler) -> list[list[str]]:
    out = []
    while (b := s.next_batch(CKS[0].key)) is not None:
        out.append([it.item_id for it in b.items])
        s.finished(b)
    return out


def test_a_conditions_seeds_share_a_batch_and_grid_order_is_kept():
    s = BatchScheduler([(CKS[0], _grid(CKS[0], 5, 3))], batch_size=8, is_done=lambda _: False)
    batches = _drain(s)
    # 8 would split a condition: batches end at a condition boundary instead.
    assert [len(b) for b in batches] == [6, 6, 3]
    assert [i for b in batches for i in b] == [it.item_id for it in _grid(CKS[0], 5, 3)]
    for b in batches:
        conditions = [i.split("-")[1] for i in b]
        assert all(conditions.count(c) == 3 for c in conditions)
    assert s.all_done() and s.complete_checkpoints() == [CKS[0]]


def test_a_condition_larger_than_a_batch_is_split_in_order():
    s = BatchScheduler([(CKS[0], _grid(CKS[0], 2, 5))], batch_size=4, is_done=lambda _: False)
    assert [len(b) for b in _drain(s)] == [4, 1, 4, 1]


def test_done_seeds_leave_the_rest_of_their_condition_together():
    done = {f"ck1-c0-s{i}" for i in range(3)} | {"ck1-c1-s0"}
    s = BatchScheduler([(CKS[0], _grid(CKS[0], 3, 3))], batch_size=4, is_done=done.__contains__)
    assert _drain(s) == [["ck1-c1-s1", "ck1-c1-s2"], ["ck1-c2-s0", "ck1-c2-s1", "ck1-c2-s2"]]
    assert s.skipped == 4
    assert s.item_ids(CKS[0].key) == {it.item_id for it in _grid(CKS[0], 3, 3)}


def test_a_busy_engine_takes_batches_of_other_adapters_of_its_base_model():
    lora = [Checkpoint("l", f"checkpoint-{i}", i, "/base", "/t", adapter=f"/a/{i}", lora_rank=8) for i in (1, 2)]
    full = CKS[0]
    s = BatchScheduler([(c, _items(c, 2)) for c in (*lora, full)], batch_size=2, is_done=lambda _: False)
    a = s.next_batch(None)
    assert a.ckpt == lora[0]
    b = s.next_batch(lora[0].key, strict=True)  # checkpoint-1 has no more: its sibling adapter, no drain
    assert b is not None and b.ckpt == lora[1]
    assert s.next_batch(lora[0].key, strict=True) is None  # never the full-weight checkpoint while busy
    assert s.next_batch(full.key, strict=True).ckpt == full
