"""Model backends, chosen in one place: `BACKENDS[ModelBackend.x]` says, for models and judges
served that way, which checkpoints they have, what to check before anything starts, and what an
actor serving them reserves on a cluster.

    entry = BACKENDS[model_cfg.backend]
    ckpts = entry.checkpoints(model_cfg)               # builtin names already resolved by the plan
    entry.preflight(where, api_cfg, ckpt)             # raises ConfigError: a server that is down
    opts = entry.placement(device, per_actor).actor_options()

A new backend is one module with its `BackendEntry` and one line in `BACKENDS`. Which backend
object an actor holds is decided inside the actor (`generation/actor.py`: vLLM, or a router to
API servers), from the specs it receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runner.checkpoints import Checkpoint, discover_checkpoints
from runner.config import ApiConfig, ModelBackend, ModelConfig
from runner.errors import ConfigError
from runner.generation.cores import cpu_env, passthrough_env

# CPUs an API-backed actor reserves: none. It only waits on HTTP; reserving even a fraction
# would leave it unplaceable when the auto-sized generation pool has taken every core.
API_ACTOR_CPUS = 0


@dataclass(frozen=True)
class Placement:
    """What one actor of a pool reserves: `unit` (CPU or GPU) x `per_actor`, and its environment."""

    unit: str                       # "CPU" | "GPU" | "" (reserves nothing: API-backed)
    per_actor: int
    env: dict[str, str] = field(default_factory=dict)

    def actor_options(self) -> dict:
        env = {"env_vars": {**self.env, **passthrough_env()}}
        if self.unit == "CPU":
            return dict(num_cpus=self.per_actor, num_gpus=0, runtime_env=env)
        if self.unit == "GPU":
            return dict(num_cpus=1, num_gpus=self.per_actor, runtime_env=env)
        return dict(num_cpus=API_ACTOR_CPUS, num_gpus=0, runtime_env=env)


def engine_placement(device: str, per_actor: int, kv_gib: int) -> Placement:
    """A local engine: `per_actor` cores (bound on the actor's node) on CPU, GPUs on CUDA."""
    if device == "cpu":
        return Placement("CPU", per_actor, cpu_env(per_actor, kv_gib))
    return Placement("GPU", per_actor)


@dataclass(frozen=True)
class BackendEntry:
    name: str
    checkpoints: Callable[[ModelConfig], list[Checkpoint]]
    judge_model: Callable[[str], Checkpoint]               # grading.judge.model (a builtin resolved) -> Checkpoint
    preflight: Callable[[str, ApiConfig, Checkpoint], None]
    placement: Callable[[str, int, int], Placement]     # (device, per_actor, kv_gib)
    serves_locally: bool                                  # an engine in the actor (needs cores/GPUs)


def _local_judge_model(model: str) -> Checkpoint:
    """A judge model directory, with its tokenizer found beside it."""
    path = Path(model).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise ConfigError(f"config error: grading.judge.model '{model}' is not a Hugging Face model "
                          f"directory (no config.json in {path}); or use a builtin model")
    tokenizer = path
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        if (path.parent / "tokenizer").is_dir():  # a run directory keeps one tokenizer beside its checkpoints
            tokenizer = path.parent / "tokenizer"
    return Checkpoint(model="judge", name=path.name, step=0, path=str(path), tokenizer=str(tokenizer))


def _no_preflight(where: str, api: ApiConfig, ckpt: Checkpoint) -> None:
    return None


def _api_checkpoints(m: ModelConfig) -> list[Checkpoint]:
    """A model served over an OpenAI-compatible API: one checkpoint, named as the server names it."""
    return [Checkpoint(model=m.name, name=m.path, step=0, path=m.path, tokenizer="")]


def _api_judge_model(model: str) -> Checkpoint:
    return Checkpoint(model="judge", name=model, step=0, path=model, tokenizer="")


def _api_preflight(where: str, api: ApiConfig, ckpt: Checkpoint) -> None:
    """A vLLM server answers and serves the model (other servers: the first request tells)."""
    if not api.vllm_extensions:
        return
    from runner.generation.openai_backend import ApiError, OpenAIBackend
    from runner.generation.specs import build_api_spec

    backend = OpenAIBackend(build_api_spec(api), where=where)
    try:
        backend.load(ckpt)
    except ApiError as e:
        raise ConfigError(f"config error: {where}: {e}") from None
    finally:
        backend.close()


BACKENDS: dict[ModelBackend, BackendEntry] = {
    ModelBackend.vllm: BackendEntry("vllm", discover_checkpoints, _local_judge_model, _no_preflight,
                                    engine_placement, serves_locally=True),
    ModelBackend.openai: BackendEntry("openai", _api_checkpoints, _api_judge_model, _api_preflight,
                                      lambda device, per_actor, kv: Placement("", 0), serves_locally=False),
}


__all__ = ["BACKENDS", "BackendEntry", "Placement", "engine_placement"]
