"""Value checks on a loaded `SweepConfig` that OmegaConf's types cannot express (ranges, required
values, URIs without credentials, a writable output directory). `validate_config` gathers every
problem into one `ConfigError`, so a user fixes them all at once."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from runner.builtins import BUILTINS, unknown_builtin_problem
from runner.errors import ConfigError

# The config types (runner.config.SweepConfig, JudgeConfig, ApiConfig) are named in annotations
# only: runner.config calls validate_config, so importing them here would make a circle.


def validate_config(cfg: "SweepConfig") -> None:
    """Value checks OmegaConf's types cannot express. Gathers every problem into one error."""
    problems: list[str] = []
    s, g = cfg.sampling, cfg.generation
    if s.seeds < 1:
        problems.append(f"sampling.seeds must be >= 1 (got {s.seeds})")
    if s.max_tokens < 1:
        problems.append(f"sampling.max_tokens must be >= 1 (got {s.max_tokens})")
    if s.temperature < 0:
        problems.append(f"sampling.temperature must be >= 0 (got {s.temperature})")
    a = s.adaptive
    if a.enabled and not 1 <= a.min_seeds <= a.max_seeds:
        problems.append(f"sampling.adaptive: need 1 <= min_seeds <= max_seeds (got {a.min_seeds}, {a.max_seeds})")
    if a.enabled and not 0 < a.target_halfwidth < 0.5:
        problems.append(f"sampling.adaptive.target_halfwidth must be in (0, 0.5) (got {a.target_halfwidth})")
    if not 0 < s.top_p <= 1:
        problems.append(f"sampling.top_p must be in (0, 1] (got {s.top_p})")
    for key in ("num_actors", "max_retries", "max_inflight"):
        if getattr(g, key) < 0:
            problems.append(f"generation.{key} must be >= 0 (got {getattr(g, key)})")
    for key in ("tensor_parallel_size", "cpu_threads_per_actor", "batch_size", "max_model_len", "cpu_kv_cache_gib",
                "max_loras"):
        if getattr(g, key) < 1:
            problems.append(f"generation.{key} must be >= 1 (got {getattr(g, key)})")
    if not 0 < g.gpu_memory_utilization <= 1:
        problems.append(f"generation.gpu_memory_utilization must be in (0, 1] (got {g.gpu_memory_utilization})")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", g.tool_parser or ""):
        problems.append(f"generation.tool_parser must be auto, none or a vLLM tool parser name such as hermes, "
                        f"llama3_json, mistral, pythonic (got {g.tool_parser!r})")
    if cfg.grading.awareness_judge and not cfg.grading.judge.enabled:
        problems.append("grading.awareness_judge=true uses the judge model: set grading.judge.enabled=true "
                        "and grading.judge.model")
    if not cfg.grading.rules and not cfg.grading.judge.enabled:
        problems.append("grading.rules=false needs a judge (grading.judge.enabled=true): nothing would label the replies")
    if cfg.wandb.attach_run_id and len(cfg.models) > 1:
        problems.append("wandb.attach_run_id attaches one model's curves to one run; list a single model")
    if cfg.wandb.transcripts_per_checkpoint < 0:
        problems.append(f"wandb.transcripts_per_checkpoint must be >= 0 (got {cfg.wandb.transcripts_per_checkpoint})")
    if not 0 < cfg.wandb.regression_alpha < 1:
        problems.append(f"wandb.regression_alpha must be in (0, 1) (got {cfg.wandb.regression_alpha})")
    if cfg.grading.num_actors < 1:
        problems.append(f"grading.num_actors must be >= 1 (got {cfg.grading.num_actors})")
    problems += _judge_problems(cfg.grading.judge)
    problems += unknown_builtin_problem("grading.judge.model", cfg.grading.judge.model)
    if not cfg.models:
        problems.append("models must list at least one model")
    names = [m.name for m in cfg.models]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"models: name '{n}' is used twice; model names must be unique")
    for i, m in enumerate(cfg.models):
        if not m.name.strip():
            problems.append(f"models[{i}].name must not be empty")
        if "{step}" not in m.checkpoint_pattern:
            problems.append(f"models[{i}].checkpoint_pattern must contain '{{step}}' (got '{m.checkpoint_pattern}')")
        if m.complete_after_seconds is not None and m.complete_after_seconds < 0:
            problems.append(f"models[{i}].complete_after_seconds must be >= 0 or null (got {m.complete_after_seconds})")
        if not m.path.strip():
            problems.append(f"models[{i}].path must not be empty")
        if m.base_model is not None and not m.base_model.strip():
            problems.append(f"models[{i}].base_model must not be empty (null: full checkpoints, no LoRA)")
        if m.max_lora_rank is not None and not 1 <= m.max_lora_rank <= 512:
            problems.append(f"models[{i}].max_lora_rank must be in 1..512 or null (got {m.max_lora_rank})")
        if m.max_lora_rank is not None and m.base_model is None:
            problems.append(f"models[{i}].max_lora_rank applies to LoRA adapters only: set models[{i}].base_model too")
        if m.backend.value == "openai":
            problems += _api_problems(f"models[{i}].api", m.api)
            if m.base_model is not None:
                problems.append(f"models[{i}].base_model (LoRA) needs the vllm backend, not openai")
        for key in ("path", "base_model", "tokenizer"):
            problems += _uri_credential_problems(f"models[{i}].{key}", getattr(m, key))
        for key in ("path", "base_model"):
            problems += unknown_builtin_problem(f"models[{i}].{key}", getattr(m, key))
    problems += _output_dir_problems(cfg.output.dir)
    if problems:
        raise ConfigError("config error: " + "; ".join(problems) if len(problems) == 1
                          else "config errors:\n  - " + "\n  - ".join(problems))


def _uri_credential_problems(key: str, value: Optional[str]) -> list[str]:
    """Secrets in a storage URI would reach config dumps, logs and rows: credentials come from the
    filesystem's environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...) instead."""
    from urllib.parse import parse_qs, urlsplit

    if not value or "://" not in value:
        return []
    parts = urlsplit(value)
    secret_params = {"access_key", "secret_key", "session_token", "password", "token", "sas_token"}
    if parts.username or parts.password or secret_params & {k.lower() for k in parse_qs(parts.query)}:
        return [f"{key} must not hold credentials (user:secret@ or key parameters); the filesystem reads them "
                f"from its usual environment, e.g. AWS_ACCESS_KEY_ID / GOOGLE_APPLICATION_CREDENTIALS"]
    return []


def _judge_problems(j: "JudgeConfig") -> list[str]:
    problems = []
    if j.enabled and not (j.model or "").strip():
        problems.append("grading.judge.model is required when grading.judge.enabled is true "
                        f"(a Hugging Face model directory, or one of {', '.join(BUILTINS)}; with grading.judge.backend=openai "
                        "the model name the server knows)")
    for key in ("num_actors", "cpu_threads_per_actor", "num_gpus_per_actor", "max_tokens", "max_attempts"):
        if getattr(j, key) < 1:
            problems.append(f"grading.judge.{key} must be >= 1 (got {getattr(j, key)})")
    if j.max_inflight < 0:
        problems.append(f"grading.judge.max_inflight must be >= 0 (got {j.max_inflight})")
    if j.max_model_len is not None and j.max_model_len < 1:
        problems.append(f"grading.judge.max_model_len must be >= 1 or null (got {j.max_model_len})")
    if j.temperature < 0:
        problems.append(f"grading.judge.temperature must be >= 0 (got {j.temperature})")
    if j.enabled and j.backend.value == "openai":
        problems += _api_problems("grading.judge.api", j.api)
        if not j.api.vllm_extensions:
            if j.structured_output:
                problems.append("grading.judge.structured_output needs a vLLM server "
                                "(grading.judge.api.vllm_extensions=true); set it to false for other servers")
            if j.max_model_len is None:
                problems.append("grading.judge.max_model_len is required when grading.judge.api.vllm_extensions "
                                "is false (only vLLM reports the model's context length)")
    return problems


def _api_problems(prefix: str, api: "ApiConfig") -> list[str]:
    from urllib.parse import urlsplit

    problems = []
    try:
        url = urlsplit(api.base_url)
        url.port  # noqa: B018 -- raises ValueError on a bad port
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError("not an http(s) URL with a host")
        if url.username or url.password:  # it would end up in config dumps and error rows
            problems.append(f"{prefix}.base_url must not hold credentials; put the key in the environment "
                            f"variable {prefix}.api_key_env names")
    except ValueError:
        problems.append(f"{prefix}.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1 "
                        f"(got '{api.base_url}')")
    if not api.api_key_env.strip():
        problems.append(f"{prefix}.api_key_env must name an environment variable")
    elif api.require_api_key and not os.environ.get(api.api_key_env):
        problems.append(f"{prefix}.require_api_key is true but the environment variable {api.api_key_env} "
                        "is not set (API keys are read from the environment only)")
    if api.max_concurrency < 1:
        problems.append(f"{prefix}.max_concurrency must be >= 1 (got {api.max_concurrency})")
    if api.timeout_seconds <= 0:
        problems.append(f"{prefix}.timeout_seconds must be > 0 (got {api.timeout_seconds})")
    if api.max_retries < 0:
        problems.append(f"{prefix}.max_retries must be >= 0 (got {api.max_retries})")
    if api.backoff_seconds < 0:
        problems.append(f"{prefix}.backoff_seconds must be >= 0 (got {api.backoff_seconds})")
    return problems


def _output_dir_problems(raw: str) -> list[str]:
    if not raw.strip():
        return ["output.dir must not be empty"]
    path = Path(os.path.expanduser(raw))
    if path.exists() and not path.is_dir():
        return [f"output.dir '{raw}' exists and is not a directory"]
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return [f"output.dir '{raw}' cannot be created: '{probe}' is a file"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"output.dir '{raw}' is not writable (no write permission on '{probe}')"]
    return []
