"""verl (PPO/GRPO trainers, FSDP and Megatron workers).

From verl's code: `verl/trainer/ppo/ray_trainer.py` (`_save_checkpoint`) writes
`default_local_dir/global_step_{N}/actor/` (the worker's checkpoint manager), then
`global_step_{N}/data.pt` (dataloader state), then `latest_checkpointed_iteration.txt` at the
run root holding N, last ("for atomic usage"). `verl/utils/checkpoint/fsdp_checkpoint_manager.py`
writes per-rank `model_/optim_/extra_state_world_size_W_rank_R.pt`, `fsdp_config.json` and
`actor/huggingface/` with config and tokenizer always, HF weights only when `hf_model` is in
`checkpoint.save_contents` (not the default). Megatron
(`verl/utils/checkpoint/megatron_checkpoint_manager.py`): `actor/dist_ckpt/` and
`actor/huggingface/` (older releases: `actor/model/huggingface/`).
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import has_full_weights, join

PATTERN = "global_step_{step}"
LATEST = "latest_checkpointed_iteration.txt"


def recognise(run: RunListing) -> bool:
    return run.has(LATEST) or any(run.is_dir(join(n, "actor")) for n, _ in run.step_dirs(PATTERN))


def _not_loadable(run: RunListing, actor: str) -> str:
    backend = "megatron" if run.is_dir(join(actor, "dist_ckpt")) else "fsdp"
    return (f"verl saved {backend.upper()} shards only (no HF weights in actor/huggingface): add 'hf_model' to "
            f"actor_rollout_ref.actor.checkpoint.save_contents, or convert with `python -m verl.model_merger merge "
            f"--backend {backend} --local_dir RUN/global_step_N/actor --target_dir DIR`")


def candidates(run: RunListing) -> list[Candidate]:
    latest = run.latest_step(LATEST)
    out = []
    for name, step in run.step_dirs(PATTERN):
        actor = join(name, "actor")
        hf = next((d for d in (join(actor, "huggingface"), join(actor, "model", "huggingface")) if run.is_dir(d)),
                  join(actor, "huggingface"))
        if latest is None:
            blocked = f"no {LATEST} yet (verl writes it once the step is saved)"
        elif step > latest:
            blocked = f"not yet in {LATEST} (it holds {latest})"
        elif not run.has(join(name, "data.pt")):
            blocked = "no data.pt (verl saves it after the actor)"
        elif not has_full_weights(run, hf):
            blocked = _not_loadable(run, actor)
        else:
            blocked = None
        out.append(Candidate(name, step, hf, blocked=blocked))
    return out


LAYOUT = Layout("verl", "verl (FSDP, Megatron)", recognise, candidates)
