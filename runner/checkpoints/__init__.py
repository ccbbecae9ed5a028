"""Checkpoints of a model under evaluation: one HF model directory, or the run directory a
trainer writes (HF Trainer/TRL/Unsloth, verl, OpenRLHF, NeMo-RL, torchtune, SkyRL, ART, or
any `checkpoint_pattern`), local or remote (a URI, see `runner.remote`).

`checkpoint_layout: auto` recognises the trainer from the files it finds (`layouts/`, one file
per trainer, each citing the save code it follows); a checkpoint counts only when complete by
that trainer's own rule and its model directory is loadable (`files`).
"""

from runner.checkpoints.discovery import RunReport, discover_checkpoints, group_reasons, list_checkpoints
from runner.checkpoints.files import adapter_rank, incomplete_reason, safetensors_truncated
from runner.checkpoints.layout import step_regexes
from runner.checkpoints.localize import localize_checkpoint
from runner.checkpoints.model import Checkpoint, CheckpointStatus


def pattern_regex(pattern: str):
    """`checkpoint-{step}` as an anchored regex whose group 1 is the integer step."""
    return step_regexes(pattern)[0]


__all__ = ["Checkpoint", "CheckpointStatus", "RunReport", "adapter_rank", "discover_checkpoints", "group_reasons",
           "incomplete_reason", "list_checkpoints", "localize_checkpoint", "pattern_regex", "safetensors_truncated"]
