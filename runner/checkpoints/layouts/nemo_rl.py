"""NeMo-RL (`nemo_rl/utils/checkpoint.py`, `nemo_rl/algorithms/grpo.py`).

`CheckpointManager.init_tmp_checkpoint` makes `tmp_step_{N}/` (training_info.json,
config.yaml), the policy saves into `tmp_step_{N}/policy/weights/` (and `policy/optimizer/`,
`policy/tokenizer/`), and `finalize_checkpoint` renames it to `step_{N}/` when complete. With
`checkpointing.save_consolidated: true` the weights include an HF directory at
`policy/weights/model/consolidated/` (no tokenizer there: it is in `policy/tokenizer/`);
otherwise only DCP shards, which vLLM cannot load.
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import join

PATTERN = "step_{step}"
TMP_PATTERN = "tmp_step_{step}"
NOT_LOADABLE = ("NeMo-RL saved DCP shards only: set checkpointing.save_consolidated: true for HF weights "
                "(policy/weights/model/consolidated/)")


def recognise(run: RunListing) -> bool:
    steps = run.step_dirs(PATTERN) + run.step_dirs(TMP_PATTERN)
    return any(run.is_dir(join(n, "policy")) or run.has(join(n, "training_info.json")) for n, _ in steps)


def candidates(run: RunListing) -> list[Candidate]:
    out = []
    for name, step in run.step_dirs(PATTERN):
        model = join(name, "policy", "weights", "model", "consolidated")
        out.append(Candidate(name, step, model, tokenizer_rels=(join(name, "policy", "tokenizer"),),
                             blocked=None if run.is_dir(model) else NOT_LOADABLE))
    for name, step in run.step_dirs(TMP_PATTERN):
        out.append(Candidate(name, step, join(name, "policy", "weights", "model", "consolidated"),
                             blocked=f"still being written (NeMo-RL renames {name} to step_{step} when complete)"))
    return sorted(out, key=lambda c: (c.step, c.name))


LAYOUT = Layout("nemo_rl", "NeMo-RL", recognise, candidates)
