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

    assert counts["fresh"] == 1 and counts["adapter"] == 3     # adapters switched without a restart
    assert out_zero == out_base == out_zero_again
    assert out_nonzero == out_merged
    assert out_nonzero != out_base
    copies = sorted(p.name for p in (tmp_path / "cache" / "remote").iterdir())
    assert [c.split("-")[:2] for c in copies] == [["checkpoint", "1"], ["checkpoint", "2"]]
