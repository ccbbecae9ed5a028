"""What discovery hands on: a Checkpoint to evaluate, and a CheckpointStatus per step directory
(what `runner checkpoints` prints)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights to evaluate. Plain data: this is what generation actors receive."""

    model: str          # ModelConfig.name
    name: str           # step directory name, e.g. checkpoint-200 or global_step_20 (or the model dir's name)
    step: int           # training step; 0 for a single model directory of unknown step
    path: str           # the HF directory the engine loads: absolute local path or URI; with
                        # `adapter` set, the base model
    tokenizer: str      # the tokenizer directory: absolute local path or URI
    adapter: str | None = None   # LoRA adapter directory (PEFT; local path or URI); None: full weights
    lora_rank: int = 0           # LoRA rank the engine must support for `adapter`

    @property
    def key(self) -> str:
        return f"{self.model}@{self.name}"


@dataclass(frozen=True)
class CheckpointStatus:
    """One step directory of a run: ready to evaluate (`checkpoint` set) or why not."""

    name: str
    step: int
    model_dir: str               # the model (or adapter) directory inside the step directory
    kind: str                    # "full" | "adapter"
    base_model: str | None       # adapters: the base model directory
    reason: str | None           # None: ready
    checkpoint: Checkpoint | None = None

    @property
    def ready(self) -> bool:
        return self.reason is None

    def as_json(self) -> dict:
        return {"name": self.name, "step": self.step, "model_dir": self.model_dir, "kind": self.kind,
                "base_model": self.base_model, "ready": self.ready, "reason": self.reason}


__all__ = ["Checkpoint", "CheckpointStatus"]
