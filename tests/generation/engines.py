"""What the in-process vLLM engine tests share: the CPU environment and one small engine spec."""

from __future__ import annotations

import os

import pytest

from runner.generation.engine import EngineSpec

CPU_SPEC = EngineSpec(device="cpu", dtype="float32", max_model_len=512,
                      engine_kwargs={"enable_chunked_prefill": False, "max_num_batched_tokens": 4096})


@pytest.fixture(scope="module")
def cpu_engine_env():
    """In-process engines on core 0 with a 1 GiB KV cache; the environment is restored after."""
    saved = dict(os.environ)
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1",
                      VLLM_CPU_OMP_THREADS_BIND="0", VLLM_LOGGING_LEVEL="WARNING")
    yield
    os.environ.clear()
    os.environ.update(saved)
