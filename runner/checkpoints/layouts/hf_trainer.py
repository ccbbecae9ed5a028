"""Hugging Face `Trainer` and everything built on it: TRL (SFT, GRPO, PPO, DPO), Unsloth.

From transformers' `trainer.py` (`_save_checkpoint`): `OUTPUT_DIR/checkpoint-{global_step}/`
gets the model first (`save_model`: config.json + weights, or for PEFT adapter_config.json +
adapter_model.safetensors and no config.json; then the tokenizer and `training_args.bin`),
then optimizer/scheduler/RNG state, then `trainer_state.json`. So `trainer_state.json` is the
completion marker. The final `trainer.save_model(output_dir)` writes a model into the run
directory itself (handled by `root_model`).
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import join, root_model

PATTERN = "checkpoint-{step}"
# Files only the Trainer writes into a checkpoint directory (the weights alone say nothing).
_TRAINER_FILES = ("trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def recognise(run: RunListing) -> bool:
    return any(run.has(join(name, f)) for name, _ in run.step_dirs(PATTERN) for f in _TRAINER_FILES)


def candidates(run: RunListing) -> list[Candidate]:
    found = run.step_dirs(PATTERN)
    out = [Candidate(name, step, name, blocked=None if run.has(join(name, "trainer_state.json")) else
                     "no trainer_state.json yet (the Trainer writes it last)") for name, step in found]
    return out + root_model(run, {step: name for name, step in found})


LAYOUT = Layout("hf_trainer", "HF Trainer / TRL / Unsloth", recognise, candidates, aliases=("trl", "unsloth"))
