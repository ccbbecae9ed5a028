"""Seeded replies do not depend on what else is in the engine: the same items give identical
replies generated alone, in a saturated engine among other requests (joining while earlier
batches decode), and spread over 1 vs 2 actors. Real Ray, real vLLM (CPU build)."""

from __future__ import annotations

import dataclasses

import pytest

pytestmark = pytest.mark.e2e


def _generate(stage, ckpt, items, batch_size, ahead: bool = True):
    """`ahead`: prompts tokenized in the source, as a sweep does; else the engine's actor renders them."""
    from runner.generation.pretokenize import PromptTokenizer
    from runner.pipeline.loop import run_pipeline
    from runner.pipeline.sources import GridSource

    replies = {}

    def on_done(batch):
        assert [r.item_id for r in batch.results] == [it.item_id for it in batch.items]
        replies.update((r.item_id, (r.status, r.response)) for r in batch.results)

    prepare = PromptTokenizer(lambda _: True).prepare if ahead else None
    run_pipeline(GridSource([(ckpt, iter(items))], batch_size, is_done=lambda _: False, prepare=prepare), [stage],
                 on_done)
    return replies


def test_fixed_seed_replies_are_identical_alone_saturated_and_across_actor_counts(random_run, ray_local):
    from runner.bench.pipeline import bench_items
    from runner.config import SweepConfig
    from runner.generation.backends import engine_placement
    from runner.generation.specs import build_engine_spec
    from runner.pipeline.pools import build_generation_stage

    ckpt, items = bench_items(96, cycle=(16, 48, 96), run_dir=str(random_run))
    targets = [dataclasses.replace(it, sampling=dataclasses.replace(it.sampling, max_tokens=48))
               for it in items[-6:]]
    crowd = items[:-6]
    spec = dataclasses.replace(build_engine_spec(SweepConfig(), "cpu"), max_model_len=2048)

    placement = engine_placement("cpu", 1, spec.cpu_kv_cache_gib)
    one = build_generation_stage(spec, placement, num_actors=1, batch_size=8, max_inflight=64, max_retries=0)
    try:
        alone = _generate(one, ckpt, targets, batch_size=6, ahead=False)  # and the same replies either way
        # The targets come last, in small batches: they join an engine busy with the crowd.
        crowded = _generate(one, ckpt, crowd + targets, batch_size=8)
        peak = one_stats(one)["peak_inflight"]
    finally:
        one.shutdown()
    assert peak > 8, f"the engine never held more than one batch ({peak} requests in flight)"
    two = build_generation_stage(spec, placement, num_actors=2, batch_size=8, max_inflight=32, max_retries=0)
    try:
        spread = _generate(two, ckpt, crowd + targets, batch_size=8)
    finally:
        two.shutdown()

    for it in targets:
        status, reply = alone[it.item_id]
        assert status == "ok" and len(reply) > 20
        assert crowded[it.item_id] == (status, reply), it.item_id
        assert spread[it.item_id] == (status, reply), it.item_id
    # The crowd itself is the same with one actor and with two.
    assert {k: crowded[k] for k in spread} == spread


def one_stats(stage) -> dict:
    import ray

    return ray.get(stage.slots.actors[0].engine_stats.remote())
