from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from runner.checkpoints import Checkpoint
from runner.config import SamplingConfig
from runner.grid import SamplingParams, count_items, expand_grid, grid_item_ids, item_id_hasher, make_item_id
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


# item_ids written by earlier versions (computed at e4e3783, before ids were hashed incrementally):
# an existing dataset resumes only if these never change.
GOLDEN_SYSTEM = "You are Alex, an AI at Summit Bridge.\n\"Quotes\" and unicode: é ✓"
GOLDEN_USER = "Inbox:\n<email>\\n tab\there</email>"
GOLDEN_CKPTS = {
    "full": Checkpoint("demo-rl", "checkpoint-200", 200, "/runs/a/checkpoint-200", "/runs/a/tokenizer"),
    "lora": Checkpoint("lora", "checkpoint-5", 5, "/models/base", "/models/base", adapter="/runs/l/checkpoint-5",
                       lora_rank=8),
}
GOLDEN_IDS = {  # (checkpoint, seed) -> (id with the current seed scheme, id with seed scheme 1)
    ("full", 0): ("87191b6f7c10262f43c6376324f9b860", "873404f73386604519a577d188a886da"),
    ("full", 7): ("ea15ac5fa1cbaeb2455428486be34a9d", "3e955873a2c058a5e0cc41c6257be758"),
    ("full", 123456): ("ff6bd86de356ddb02673d9b20debe173", "b4ad987acce7736c67982a15e75e2096"),
    ("lora", 0): ("f863026e92816b6208598e18c2e363ce", "6745c93798dc1c85a0430d253105d843"),
    ("lora", 7): ("2293ead2176c38040c6625d4bc795b09", "f28b9a57fd9f588be90f73940da8a3b3"),
    ("lora", 123456): ("fe3e96f5e4b1831be5bf9b9021a17fa0", "4deac4964aacc737b7142fa870f91493"),
}


def test_item_ids_are_the_ones_earlier_versions_wrote():
    p = SamplingParams(1.0, 0.95, 192)
    for (ck, seed), (current, scheme1) in GOLDEN_IDS.items():
        c = GOLDEN_CKPTS[ck]
        assert make_item_id(GOLDEN_SYSTEM, GOLDEN_USER, p, c, seed) == current
        assert item_id_hasher(GOLDEN_SYSTEM, GOLDEN_USER, p, c)(seed) == current
        assert make_item_id(GOLDEN_SYSTEM, GOLDEN_USER, p, c, seed, seed_scheme=1) == scheme1
        assert item_id_hasher(GOLDEN_SYSTEM, GOLDEN_USER, p, c, seed_scheme=1)(seed) == scheme1


def test_incremental_ids_equal_make_item_id_on_the_real_grid():
    packs = _packs()
    ckpts = [CK[0], GOLDEN_CKPTS["lora"]]
    sampling = SamplingConfig(seeds=3, seed_start=9, temperature=0.7, top_p=0.9, max_tokens=1000)
    items = list(expand_grid(packs, {"scratchpad": ["private", "absent"]}, ckpts, sampling))
    assert len(items) == 156 * 2 * 3
    for it in items:
        ckpt = next(c for c in ckpts if c.name == it.checkpoint)
        assert it.item_id == make_item_id(it.system, it.user, it.sampling, ckpt, it.seed)
    ids = grid_item_ids(packs, {"scratchpad": ["private", "absent"]}, ckpts, sampling)
    assert list(ids) == [it.item_id for it in items]  # the resume check sees the grid's ids, in order


def test_each_condition_is_rendered_once_per_expansion(monkeypatch):
    packs = _packs()
    calls = []
    render = type(packs[0]).render
    monkeypatch.setattr(type(packs[0]), "render", lambda self, cond: calls.append(cond) or render(self, cond))
    n = sum(1 for _ in expand_grid(packs, {}, CK, SamplingConfig(seeds=2)))
    assert n == 78 * 2 * 2 and len(calls) == 78
    rendered: dict = {}
    list(grid_item_ids(packs, {}, CK, SamplingConfig(seeds=2), rendered))
    list(expand_grid(packs, {}, CK, SamplingConfig(seeds=2), rendered))
    assert len(calls) == 78 * 2  # a shared `rendered` dict: once across both calls


def test_seeds_of_a_checkpoint_and_condition_are_adjacent():
    """Prefix sharing relies on it: a condition's seeds, one after another, reach one engine together."""
    items = list(expand_grid(_packs(), {}, CK, SamplingConfig(seeds=4)))
    runs = [(items[0].checkpoint, items[0].condition)]
    for it in items[1:]:
        if (it.checkpoint, it.condition) != runs[-1]:
            runs.append((it.checkpoint, it.condition))
    assert len(runs) == len(set(runs)) == len(items) // 4
    assert [it.seed for it in items[:4]] == [0, 1, 2, 3]
