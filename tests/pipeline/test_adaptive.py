"""Adaptive seeds (runner/pipeline/adaptive.py): rounds per (checkpoint, family), driven without Ray."""

from __future__ import annotations

from runner.checkpoints import Checkpoint
from runner.config import AdaptiveSeedsConfig
from runner.grid import SamplingParams, WorkItem
from runner.pipeline.adaptive import STOP_HALFWIDTH, STOP_MAX_SEEDS, AdaptiveSource, halfwidth

CK = Checkpoint("m", "ck1", 1, "/p", "/t")
RULE = AdaptiveSeedsConfig(enabled=True, min_seeds=8, max_seeds=40, target_halfwidth=0.05)
CONDITIONS = 4


def expand(ckpt, family, seeds):
    return [WorkItem(f"{family}-c{c}-s{s}", family, f"c{c}", ckpt.model, ckpt.name, ckpt.step, s, "sys", f"u{c}",
                     SamplingParams(1.0, 1.0, 8)) for c in range(CONDITIONS) for s in seeds]


def harmful_of(item_id: str) -> bool:
    """'never' is never harmful; 'often' is harmful on every other seed."""
    family, _, seed = item_id.split("-")
    return family == "often" and int(seed[1:]) % 2 == 0


def run(done: dict[str, bool | None]):
    """Drain the source as the pipeline would (generate + label each batch); returns (source, labelled ids)."""
    src = AdaptiveSource([CK], expand, ["never", "often"], RULE, seed_start=0, batch_size=16,
                         is_done=done.__contains__, stored=done,
                         label=lambda batch, i: harmful_of(batch.items[i].item_id))
    generated = []
    while (b := src.next_batch(None)) is not None:
        generated += [it.item_id for it in b.items]
        assert all(it.seed_rule.startswith("adaptive(min_seeds=8,max_seeds=40,target_halfwidth=0.05);round=")
                   for it in b.items)
        src.finished(b)
    assert src.all_done() and src.complete_checkpoints() == [CK]
    return src, generated


def test_cells_stop_at_the_target_halfwidth_or_the_cap():
    src, generated = run({})
    never, often = src.cells[(CK.key, "never")], src.cells[(CK.key, "often")]
    # 0/32 gives a half-width above 0.05, 0/64 below: two rounds of 8 seeds.
    assert halfwidth(0, 32) > 0.05 >= halfwidth(0, 64)
    assert (never.seeds, never.stop) == (16, STOP_HALFWIDTH)
    # A 50% rate needs ~384 samples: the cap (40 seeds x 4 conditions = 160) comes first.
    assert (often.seeds, often.stop) == (40, STOP_MAX_SEEDS)
    assert len(generated) == len(set(generated)) == CONDITIONS * (16 + 40)
    assert src.cell_metrics(CK.key)["never/adaptive_stop"] == STOP_HALFWIDTH
    assert src.cell_metrics(CK.key)["often/adaptive_seeds"] == 40
    # Seeds in order from seed_start, whole rounds, and every item tells its round.
    assert sorted({int(i.split("-s")[1]) for i in generated if i.startswith("never")}) == list(range(16))


def test_a_rerun_replays_the_same_rounds_from_stored_labels_and_draws_nothing_new():
    first, generated = run({})
    stored = {i: harmful_of(i) for i in generated}
    again, regenerated = run(stored)
    assert regenerated == []
    assert again.skipped == len(generated)
    assert {k: (c.seeds, c.stop) for k, c in again.cells.items()} == {k: (c.seeds, c.stop) for k, c in first.cells.items()}


def test_an_interrupted_run_resumes_where_it_stopped():
    _, generated = run({})
    half = generated[: len(generated) // 2]
    resumed, rest = run({i: harmful_of(i) for i in half})
    assert sorted(half + rest) == sorted(generated)


def test_unscored_items_do_not_narrow_the_interval():
    src = AdaptiveSource([CK], expand, ["never"], RULE, seed_start=0, batch_size=64, is_done=lambda _: False,
                         stored={}, label=lambda batch, i: None)
    while (b := src.next_batch(None)) is not None:
        src.finished(b)
    assert src.cells[(CK.key, "never")].stop == STOP_MAX_SEEDS
