"""Which checkpoints one loaded engine serves at once: LoRA adapters of one base model.

vLLM serves several adapters in one running batch (`max_loras` of them per step, each request
naming its own `LoRARequest`). So adapter checkpoints of the same base model, of ranks the
engine reserved room for, form one engine group: moving between them never drains the engine.
A full-weight checkpoint is a group of its own (its weights are the engine's).

Plain data, no vLLM import: the driver's scheduler (pipeline/sources.py) and each actor's
`CheckpointGate` (engine.py) group checkpoints the same way.
"""

from __future__ import annotations

from runner.checkpoints import Checkpoint

# The values vLLM accepts for max_lora_rank (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def engine_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of rank `rank`."""
    for r in VLLM_LORA_RANKS:
        if r >= rank:
            return r
    raise ValueError(f"LoRA rank {rank} is above the largest vLLM supports ({VLLM_LORA_RANKS[-1]})")


def engine_group(ckpt: Checkpoint):
    """Equal for checkpoints one engine serves side by side: adapters of one base model (its
    directory) and one reserved rank; a full-weight checkpoint is its own group."""
    if not ckpt.adapter:
        return ckpt
    return f"lora|{ckpt.path}|r{engine_lora_rank(ckpt.lora_rank)}"


__all__ = ["VLLM_LORA_RANKS", "engine_group", "engine_lora_rank"]
