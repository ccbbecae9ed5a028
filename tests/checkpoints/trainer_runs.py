"""Miniature run directories as each RL framework writes them, from the demo model's real tensors.

Each builder follows the framework's own save code (paths cited in runner/checkpoints/layouts/):
the same directory names, the same files in the same places, trainer state as small stand-in
files (an engine never reads them). Steps listed in `in_progress` are left the way a save that
is still running leaves them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tests.lora_adapters import write_adapter

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def age(path: Path, seconds: float = 3600) -> Path:
    """Every file below `path` last modified `seconds` ago: past any quiet period."""
    t = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t))
    return path


def write_config(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json"):
        shutil.copy(src / name, dest / name)


def write_tokenizer(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dest / name)


def write_weights(src: Path, dest: Path, shards: int = 1, index: bool = True) -> None:
    """The model's tensors as `model.safetensors`, or split into `model-0000k-of-0000n` shards
    with their index the way `save_pretrained` names them."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    if shards == 1:
        shutil.copy(src / "model.safetensors", dest / "model.safetensors")
        return
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for k in range(shards):
        part = names[k::shards]
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in part}, str(dest / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    if index:
        (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_model(src: Path, dest: Path, shards: int = 1, tokenizer: bool = True) -> Path:
    write_config(src, dest)
    write_weights(src, dest, shards)
    if tokenizer:
        write_tokenizer(src, dest)
    return dest


def _state(path: Path, text: str = "state") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())


# --- the frameworks ---------------------------------------------------------------------------


def trl_run(src: Path, run: Path, steps=(10, 20), in_progress=(30,), peft: bool = False,
            final_step: int | None = 35) -> Path:
    """transformers Trainer `_save_checkpoint`: model (or adapter), tokenizer, training_args.bin,
    optimizer/scheduler, then trainer_state.json; the final save_model + save_state in the root."""
    def save_model(d: Path, seed: int):
        if peft:
            write_adapter(d, src, rank=4, seed=seed)
            write_tokenizer(src, d)
        else:
            write_model(src, d)
        _state(d / "training_args.bin")

    for s in (*steps, *in_progress):
        d = run / f"checkpoint-{s}"
        save_model(d, seed=s)
        _state(d / "optimizer.pt")
        if s not in in_progress:
            (d / "trainer_state.json").write_text(json.dumps({"global_step": s, "log_history": []}))
    if final_step is not None:
        save_model(run, seed=final_step)
        (run / "trainer_state.json").write_text(json.dumps({"global_step": final_step, "log_history": []}))
    return run


def verl_run(src: Path, run: Path, steps=(5, 10), in_progress=(15,), hf_model: bool = True,
             megatron: bool = False) -> Path:
    for s in (*steps, *in_progress):
        actor = run / f"global_step_{s}" / "actor"
        hf = actor / ("model/huggingface" if megatron else "huggingface")
        if megatron:
            _state(actor / "dist_ckpt" / "__0_0.distcp")
        else:
            for kind in ("model", "optim", "extra_state"):
                _state(actor / f"{kind}_world_size_1_rank_0.pt")
            (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
        write_config(src, hf)
        write_tokenizer(src, hf)
        if hf_model:
            write_weights(src, hf)
        if s not in in_progress:
            _state(run / f"global_step_{s}" / "data.pt")
    if steps:
        (run / "latest_checkpointed_iteration.txt").write_text(str(steps[-1]))
    return run


def openrlhf_run(src: Path, run: Path, steps=(4, 8), save_hf: bool = True, best: int | None = 8) -> Path:
    for s in steps:
        _state(run / "_actor" / f"global_step{s}" / "mp_rank_00_model_states.pt")
        if save_hf:
            write_model(src, run / f"global_step{s}_hf", shards=2)
    if save_hf and best is not None:
        write_model(src, run / f"best_global_step{best}_hf", shards=2)
    return age(run)


def nemo_rl_run(src: Path, run: Path, steps=(2, 4), in_progress=(6,), consolidated: bool = True) -> Path:
    for s in (*steps, *in_progress):
        d = run / (f"tmp_step_{s}" if s in in_progress else f"step_{s}")
        (d).mkdir(parents=True, exist_ok=True)
        (d / "training_info.json").write_text(json.dumps({"step": s}))
        (d / "config.yaml").write_text("policy: {}\n")
        _state(d / "policy" / "weights" / "model" / "shard-00001.distcp")
        if consolidated:
            cons = d / "policy" / "weights" / "model" / "consolidated"
            write_config(src, cons)
            write_weights(src, cons)
        write_tokenizer(src, d / "policy" / "tokenizer")
        _state(d / "policy" / "optimizer" / "optim.distcp")
    return run


def torchtune_run(src: Path, run: Path, epochs=(0, 1), lora: bool = True) -> Path:
    for e in epochs:
        d = write_model(src, run / f"epoch_{e}", shards=2)
        if lora:
            write_adapter(d, src, rank=4, seed=e)
        _state(d / "recipe_state.pt")
    return age(run)


def skyrl_run(src: Path, run: Path, steps=(10, 20), in_progress=(30,)) -> Path:
    for s in (*steps, *in_progress):
        policy = run / f"global_step_{s}" / "policy"
        for name in ("model_state.pt", "optimizer_state.pt", "lr_scheduler_state.pt"):
            _state(policy / name)
        (policy / "fsdp_config.json").write_text(json.dumps({"fsdp_strategy": "fsdp2", "world_size": 1}))
        write_config(src, policy / "huggingface")
        write_tokenizer(src, policy / "huggingface")
        if s not in in_progress:
            _state(run / f"global_step_{s}" / "data.pt")
            _state(run / f"global_step_{s}" / "trainer_state.pt")
    (run / "latest_ckpt_global_step.txt").write_text(str(steps[-1]))
    return run


def skyrl_export(src: Path, export: Path, steps=(10, 20)) -> Path:
    for s in steps:
        write_model(src, export / f"global_step_{s}" / "policy")
    return age(export)


def art_run(src: Path, model_dir: Path, steps=(1, 2)) -> Path:
    for s in steps:
        d = model_dir / f"{s:04d}"
        write_adapter(d, src, rank=4, seed=s)
        write_tokenizer(src, d)
    (model_dir / "trajectories" / "train").mkdir(parents=True, exist_ok=True)
    (model_dir / "trajectories" / "train" / "0001.jsonl").write_text("{}\n")
    return age(model_dir)
