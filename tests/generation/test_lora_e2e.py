"""LoRA adapter checkpoints on real vLLM (CPU): one engine of the base model serves every adapter.

Greedy outputs must show the adapter is applied exactly: an adapter whose B matrices are zero
gives the base model's outputs, and a non-zero adapter gives the outputs of a fresh engine on
the merged weights (W + B @ A * alpha / r), with no engine restart between adapters. The adapter
run is read through a `file://` URI, so the adapters are also copied to the local cache first.
"""

from __future__ import annotations

import dataclasses

import pytest

from runner.checkpoints import Checkpoint, discover_checkpoints
from runner.config import ModelConfig
from tests.generation.engines import CPU_SPEC, cpu_engine_env  # noqa: F401 (fixture)
from tests.lora_adapters import merge_adapter, write_adapter

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("cpu_engine_env")]


SPEC = CPU_SPEC


def _probe_fresh(ckpt: Checkpoint) -> list[list[int]]:
    from runner.generation.vllm_backend import VllmBackend

    backend = VllmBackend(SPEC)
    try:
        backend.load(ckpt)
        return backend._probe()
    finally:
        backend.close()


def test_adapters_switch_on_one_engine_and_match_merged_weights(random_run, tmp_path):
    from runner.generation.vllm_backend import VllmBackend

    base = random_run / "checkpoint-100"
    run = tmp_path / "adapters"
    write_adapter(run / "checkpoint-1", base, rank=8, seed=1, zero_b=True)
    write_adapter(run / "checkpoint-2", base, rank=8, seed=2)
    merged = merge_adapter(base, run / "checkpoint-2", tmp_path / "merged")
    zero, nonzero = discover_checkpoints(ModelConfig(name="lora", path=f"file://{run}", base_model=str(base)))

    backend = VllmBackend(dataclasses.replace(SPEC, cache_dir=str(tmp_path / "cache")))
    try:
        backend.load(zero)
        out_zero = backend._probe()
        backend.load(nonzero)
        out_nonzero = backend._probe()
        backend.load(zero)            # and back: the adapter, not leftover state, decides
        out_zero_again = backend._probe()
        counts = dict(backend.counts)
    finally:
        backend.close()

    out_base = _probe_fresh(Checkpoint("m", "base", 0, str(base), str(base)))
    out_merged = _probe_fresh(Checkpoint("m", "merged", 0, str(merged), str(base)))

    assert counts["fresh"] == 1 and counts["adapter"] == 2     # two adapters served, without a restart
    assert out_zero == out_base == out_zero_again
    assert out_nonzero == out_merged
    assert out_nonzero != out_base
    copies = sorted(p.name for p in (tmp_path / "cache" / "remote").iterdir())
    assert [c.split("-")[:2] for c in copies] == [["checkpoint", "1"], ["checkpoint", "2"]]


def test_batches_of_two_adapters_in_flight_at_once_each_get_their_own_adapter(random_run, tmp_path):
    """Requests of two adapters share the engine's running batch; each reply is its own adapter's."""
    import threading

    from runner.generation.engine import Generator
    from runner.generation.vllm_backend import VllmBackend
    from runner.grid import SamplingParams, WorkItem

    base = random_run / "checkpoint-100"
    run = tmp_path / "adapters"
    write_adapter(run / "checkpoint-1", base, rank=8, seed=1)
    write_adapter(run / "checkpoint-2", base, rank=8, seed=2)
    a1, a2 = discover_checkpoints(ModelConfig(name="lora", path=str(run), base_model=str(base)))

    def items(ck):
        return [WorkItem(f"{ck.name}-{i}", "f", "c", ck.model, ck.name, ck.step, i, "You are an agent.",
                         f"Write note {i}.", SamplingParams(0.0, 1.0, 12)) for i in range(4)]

    gen = Generator(VllmBackend(SPEC), SPEC)
    try:
        alone = {ck.name: [r.response for r in gen.generate(ck, items(ck))] for ck in (a1, a2)}
        together: dict = {}
        threads = [threading.Thread(target=lambda ck=ck: together.setdefault(
            ck.name, [r.response for r in gen.generate(ck, items(ck))])) for ck in (a1, a2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts = dict(gen.backend.counts)
        peak = gen.backend.loop.peak_inflight
    finally:
        gen.backend.close()
    assert together == alone
    assert alone["checkpoint-1"] != alone["checkpoint-2"]
    assert counts["fresh"] == 1 and counts["adapter"] == 2
    assert peak > 4  # requests of both adapters were in the engine at once
