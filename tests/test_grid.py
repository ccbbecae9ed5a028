from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from runner.checkpoints import Checkpoint
from runner.config import SamplingConfig
from runner.grid import count_items, expand_grid
from runner.scenarios import load_packs

REPO = Path(__file__).resolve().parent.parent


def _packs():
    return load_packs([REPO / "scenarios"], ["blackmail"])


CK = [Checkpoint("m", f"checkpoint-{s}", s, f"/x/{s}", "/x/tok") for s in (100, 200)]


def test_grid_size_ids_unique_and_grouped_by_checkpoint():
    packs = _packs()
    sampling = SamplingConfig(seeds=3)
    items = list(expand_grid(packs, {}, CK, sampling))
    assert len(items) == count_items(packs, {}, CK, 3)
    assert len({i.item_id for i in items}) == len(items)
    steps = [i.checkpoint_step for i in items]
    assert steps == sorted(steps)  # all of checkpoint 100 before any of 200


def test_item_id_is_stable_and_depends_on_what_decides_the_sample():
    packs = _packs()
    a = list(expand_grid(packs, {}, CK[:1], SamplingConfig(seeds=2)))
    b = list(expand_grid(packs, {}, CK[:1], SamplingConfig(seeds=2)))
    assert [i.item_id for i in a] == [i.item_id for i in b]
    hotter = list(expand_grid(packs, {}, CK[:1], SamplingConfig(seeds=2, temperature=0.5)))
    assert not {i.item_id for i in a} & {i.item_id for i in hotter}
    other_ckpt = list(expand_grid(packs, {}, [replace(CK[0], name="checkpoint-101", step=101)], SamplingConfig(seeds=2)))
    assert not {i.item_id for i in a} & {i.item_id for i in other_ckpt}
    shifted = list(expand_grid(packs, {}, CK[:1], SamplingConfig(seeds=2, seed_start=1)))
    assert {i.item_id for i in a} & {i.item_id for i in shifted}  # seed 1 is shared
    assert len({i.item_id for i in a} | {i.item_id for i in shifted}) == len(a) * 3 // 2


def test_engine_seeds_differ_across_conditions_and_repeat_across_checkpoints():
    packs = _packs()
    items = list(expand_grid(packs, {}, CK, SamplingConfig(seeds=2)))
    first = [i for i in items if i.checkpoint_step == 100]
    second = [i for i in items if i.checkpoint_step == 200]
    # Same sample seed, different condition: a different random stream.
    seed0 = [i.engine_seed for i in first if i.seed == 0]
    assert len(set(seed0)) == len(seed0) == 78
    # Same condition and seed on another checkpoint: the same stream (common random numbers).
    assert [i.engine_seed for i in first] == [i.engine_seed for i in second]
    assert all(0 <= i.engine_seed < 2**31 for i in items)


def test_where_restricts_conditions():
    packs = _packs()
    items = list(expand_grid(packs, {"urgency": ["replacement"]}, CK[:1], SamplingConfig(seeds=1)))
    assert items and all("urgency=replacement" in i.condition for i in items)


def test_grid_is_lazy():
    gen = expand_grid(_packs(), {}, CK, SamplingConfig(seeds=10_000))
    first = next(gen)
    assert first.seed == 0
