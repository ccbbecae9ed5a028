"""OpenRLHF (`openrlhf/trainer/ray/ppo_actor.py` `save_checkpoint`, `openrlhf/trainer/ppo_trainer.py`).

DeepSpeed shards go to `ckpt.path/_actor/global_step{N}/`; only with `--ckpt.save_hf` a full
HF directory `ckpt.path/global_step{N}_hf/` (sharded weights + index + tokenizer; with LoRA an
adapter), and `best_global_step{N}_hf/` for the best eval metric. No completion marker.
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import NO_MARKER_QUIET_SECONDS, join

HF_PATTERN = "global_step{step}_hf"
BEST_PATTERN = "best_global_step{step}_hf"
SHARD_PATTERN = "global_step{step}"
NOT_LOADABLE = "OpenRLHF saved DeepSpeed shards only (_actor/): add --ckpt.save_hf to write global_stepN_hf/"


def recognise(run: RunListing) -> bool:
    return run.is_dir("_actor") or bool(run.step_dirs(HF_PATTERN)) or bool(run.step_dirs(BEST_PATTERN))


def candidates(run: RunListing) -> list[Candidate]:
    hf = run.step_dirs(HF_PATTERN)
    out = [Candidate(n, s, n, quiet_seconds=NO_MARKER_QUIET_SECONDS) for n, s in hf]
    have = {s for _, s in hf}
    for name, step in run.step_dirs(BEST_PATTERN):
        out.append(Candidate(name, step, name, quiet_seconds=NO_MARKER_QUIET_SECONDS,
                             blocked=f"the same weights as global_step{step}_hf" if step in have else None))
    if run.is_dir("_actor"):
        for name, step in run.step_dirs(SHARD_PATTERN, "_actor"):
            if step not in have:
                out.append(Candidate(name, step, join("_actor", name), blocked=NOT_LOADABLE))
    return sorted(out, key=lambda c: (c.step, c.name))


LAYOUT = Layout("openrlhf", "OpenRLHF", recognise, candidates)
