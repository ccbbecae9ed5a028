"""SkyRL (`skyrl/train/trainer.py`).

Checkpoints (`save_checkpoints`): `ckpt_path/global_step_{N}/policy/` with the rank state
(`model_state.pt`, ... or Megatron `*.distcp`), `policy/huggingface/` (config and tokenizer
only), with LoRA `policy/lora_adapter/` in PEFT format (adapter_config.json +
adapter_model.safetensors: `skyrl/backends/skyrl_train/distributed/fsdp_strategy.py`); then
`data.pt`, `trainer_state.pt`, and
`latest_ckpt_global_step.txt` at the root, last. HF weights only as exports
(`save_models`, every `trainer.hf_save_interval` steps) at
`export_path/global_step_{N}/policy/`: a full HF directory, with no marker.
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import NO_MARKER_QUIET_SECONDS, has_full_weights, is_model_dir, join

PATTERN = "global_step_{step}"
LATEST = "latest_ckpt_global_step.txt"
NOT_LOADABLE = ("SkyRL checkpoints hold training state only (policy/huggingface has config and tokenizer, no "
                "weights): set trainer.hf_save_interval to export HF weights, then evaluate "
                "trainer.export_path (its global_step_N/policy/)")


def recognise(run: RunListing) -> bool:
    return run.has(LATEST) or any(run.is_dir(join(n, "policy")) for n, _ in run.step_dirs(PATTERN))


def candidates(run: RunListing) -> list[Candidate]:
    latest = run.latest_step(LATEST)
    out = []
    for name, step in run.step_dirs(PATTERN):
        policy = join(name, "policy")
        if is_model_dir(run, policy) and has_full_weights(run, policy):   # an export (hf_save_interval)
            out.append(Candidate(name, step, policy, quiet_seconds=NO_MARKER_QUIET_SECONDS))
            continue
        lora = join(policy, "lora_adapter")
        model = lora if run.has(join(lora, "adapter_config.json")) else join(policy, "huggingface")
        if latest is None:
            blocked = f"no {LATEST} yet (SkyRL writes it once the step is saved)"
        elif step > latest:
            blocked = f"not yet in {LATEST} (it holds {latest})"
        elif model != lora and not has_full_weights(run, model):
            blocked = NOT_LOADABLE
        else:
            blocked = None
        out.append(Candidate(name, step, model, tokenizer_rels=(join(policy, "huggingface"),), blocked=blocked))
    return out


LAYOUT = Layout("skyrl", "SkyRL", recognise, candidates)
