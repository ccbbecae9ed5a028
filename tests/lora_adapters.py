"""PEFT-format LoRA adapters for tests, written with safetensors + json (no peft needed), and
the merged-weights model an adapter should be equivalent to."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TARGETS = {"q_proj": "self_attn", "v_proj": "self_attn", "down_proj": "mlp"}


def write_adapter(out: Path, base: Path, rank: int = 8, alpha: int = 16, seed: int = 0, zero_b: bool = False,
                  scale: float = 0.2) -> dict:
    """An adapter for the Llama model in `base` (lora_A random, lora_B random or zero). Returns its tensors."""
    import torch
    from safetensors.torch import save_file

    cfg = json.loads((base / "config.json").read_text())
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {"q_proj": (hidden, hidden), "v_proj": (hidden, hidden), "down_proj": (hidden, inter)}
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(cfg["num_hidden_layers"]):
        for mod, (n_out, n_in) in shapes.items():
            pre = f"base_model.model.model.layers.{layer}.{TARGETS[mod]}.{mod}"
            tensors[f"{pre}.lora_A.weight"] = torch.randn(rank, n_in, generator=g) * scale
            tensors[f"{pre}.lora_B.weight"] = (torch.zeros(n_out, rank) if zero_b
                                               else torch.randn(n_out, rank, generator=g) * scale)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha,
        "target_modules": list(TARGETS), "bias": "none", "base_model_name_or_path": str(base)}))
    return tensors


def merge_adapter(base: Path, adapter: Path, out: Path) -> Path:
    """`base` with W + B @ A * (alpha / r) folded into its weights, as a plain HF checkpoint."""
    from safetensors.torch import load_file, save_file

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    scaling = cfg["lora_alpha"] / cfg["r"]
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    shutil.copytree(base, out)
    weights = load_file(str(base / "model.safetensors"))
    for key, a in lora.items():
        if key.endswith(".lora_A.weight"):
            b = lora[key.replace(".lora_A.", ".lora_B.")]
            target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
            weights[target] = weights[target] + (b @ a) * scaling
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
