"""The sweep config: typed dataclasses, loaded from YAML plus dotlist overrides through OmegaConf.

Every field is typed and documented here, where it is defined. The dataclass defaults *are* the
embedded default sweep (the demo RL run on local Ray and vLLM's CPU build); `conf/sweep.yaml`
spells the same values out and a test keeps the two equal.

    cfg = load_config("conf/sweep.yaml", ["sampling.seeds=8", "output.dir=/tmp/x"])

Anything wrong (missing or unparsable file, unknown key, wrong type, missing value, bad value,
unwritable output directory) raises `ConfigError` naming the key and what is allowed, before any
engine starts and before anything is written.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from runner.config_checks import validate_config  # value checks, in a module of their own
from runner.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "conf" / "sweep.yaml"
BUILTIN_DEMO_MODEL = "builtin:demo-rl"


class Device(str, enum.Enum):
    """Where generation engines run. `auto` picks `cuda` when Ray sees GPUs, else `cpu`."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class JudgeCombine(str, enum.Enum):
    """How the final `harmful` label combines the LLM judge's verdict with the rule evidence."""

    judge_and_evidence = "judge_and_evidence"  # harmful only when both say so (conservative)
    judge_only = "judge_only"                  # the judge decides; rules are recorded beside it
    evidence_only = "evidence_only"            # the rules decide; the judge is recorded beside them
    judge_or_evidence = "judge_or_evidence"    # harmful when either says so


class WandbMode(str, enum.Enum):
    """`auto`: `online` when WANDB_API_KEY is set in the environment, else `offline`."""

    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


class ModelBackend(str, enum.Enum):
    """What runs a model: `vllm`, an engine in the runner's own Ray actors; `openai`, an
    OpenAI-compatible server already running (`vllm serve`, or a hosted API), see ApiConfig."""

    vllm = "vllm"
    openai = "openai"


@dataclass
class ApiConfig:
    """An OpenAI-compatible server, used when a model's (or the judge's) `backend` is `openai`.

    The API key is read from the environment variable named by `api_key_env`, never from config,
    and is never written to config dumps, results or logs.
    """

    # Base URL up to and including `/v1`, e.g. http://127.0.0.1:8000/v1 (a `vllm serve`) or
    # https://api.openai.com/v1. vLLM's /tokenize is found beside it (the URL without `/v1`).
    base_url: str = "http://127.0.0.1:8000/v1"
    # Name of the environment variable holding the API key (sent as `Authorization: Bearer`,
    # when set).
    api_key_env: str = "OPENAI_API_KEY"
    # Refuse to start when that variable is unset (hosted APIs); off for a local `vllm serve`.
    require_api_key: bool = False
    # Requests in flight at once, per actor (each actor has its own bound).
    max_concurrency: int = 8
    # Seconds to wait for a reply to one request (connect and each read) before retrying it.
    timeout_seconds: float = 300.0
    # Retries per request after the first, on connection errors, timeouts, 429 and 5xx; the
    # wait doubles from `backoff_seconds` (a numeric Retry-After is honoured). Then it fails.
    max_retries: int = 4
    backoff_seconds: float = 1.0
    # The server is `vllm serve`: use vLLM's API extensions (structured outputs for the judge's
    # verdict format, /tokenize for exact prompt lengths, max_model_len from /v1/models, and a
    # check at start that it serves the model). false for other servers: replies unconstrained,
    # prompt lengths estimated from the text, context length from config.
    vllm_extensions: bool = True


@dataclass
class ModelConfig:
    """One model under evaluation: a single HF checkpoint or a run directory of checkpoints."""

    # Short name used in results (`model` column) and in W&B run names. Required.
    name: str = MISSING
    # A Hugging Face model directory, a run directory whose subdirectories are checkpoints, or
    # a builtin built offline on first use into cache_dir: `builtin:demo-rl` (the demo RL run) or
    # `builtin:smollm2-135m-instruct` (a real 135M instruct model; runner/builtins.py). Required.
    # Directories may be filesystem URIs (s3://, gs://, hdfs://, abfs://, file://; other schemes
    # through fsspec when installed): the driver lists them, and each generation actor copies a
    # checkpoint into `<cache_dir>/remote/` on its own node before loading it.
    # With `base_model` set: a LoRA adapter directory or a run directory of adapter checkpoints.
    # With `backend: openai`: the model name the server knows (one checkpoint, step 0).
    path: str = MISSING
    # Which trainer wrote the run directory: `auto` recognises HF Trainer/TRL/Unsloth, verl,
    # OpenRLHF, NeMo-RL, torchtune, SkyRL and ART from the files found; or a layout name (see
    # `runner checkpoints --help`), or a pattern naming the model directory of each step, e.g.
    # `global_step_{step}/actor/huggingface`.
    checkpoint_layout: str = "auto"
    # How plain checkpoint directories are named; `{step}` is the integer training step. A value
    # other than the default overrides `checkpoint_layout: auto`, as a pattern does.
    checkpoint_pattern: str = "checkpoint-{step}"
    # Evaluate only these checkpoint directory names; empty means every one discovered.
    checkpoints: List[str] = field(default_factory=list)
    # Tokenizer directory, for checkpoints saved without tokenizer files. None: the checkpoint's.
    tokenizer: Optional[str] = None
    # A checkpoint counts once it is complete by its trainer's rule (see runner/checkpoints/) and
    # config.json, tokenizer and whole weight files are there. Stricter rules for trainers that
    # write in place: a marker file they write last (e.g. COMPLETE), and/or no file changed for
    # this many seconds. None: the layout's own quiet period (30 s for trainers that write no
    # marker: OpenRLHF, torchtune, ART, SkyRL exports; 0 otherwise).
    complete_marker: Optional[str] = None
    complete_after_seconds: Optional[float] = None
    # LoRA: the base model's HF directory (local path or URI). `path` then holds PEFT adapter
    # checkpoints (adapter_config.json + adapter_model.safetensors); one vLLM engine of the base
    # model serves every checkpoint, switching adapters per request. None: full checkpoints.
    base_model: Optional[str] = None
    # LoRA rank the engine reserves. None: the largest `r` among the adapters (rounded up to a
    # rank vLLM supports); set it when later adapters of a watched run may have a larger rank.
    max_lora_rank: Optional[int] = None
    # `openai`: the model is served by an OpenAI-compatible server (`api`); `path` is then the
    # model name as the server knows it, evaluated as one checkpoint (step 0).
    backend: ModelBackend = ModelBackend.vllm
    # The server, when `backend` is `openai`.
    api: ApiConfig = field(default_factory=ApiConfig)


@dataclass
class ScenariosConfig:
    """Which scenario packs and which of their conditions make up the grid."""

    # Load the packs shipped in the repository's `scenarios/` directory.
    builtin: bool = True
    # Extra directories of user packs (each subdirectory holding a `pack.yaml` is a pack).
    dirs: List[str] = field(default_factory=list)
    # Families to run, by pack name; empty means every loaded pack.
    families: List[str] = field(default_factory=list)
    # Restrict condition variables, e.g. {urgency: [replacement]}. Design variables not listed
    # keep all their values; options (scratchpad, instruction, awareness_notice) not listed stay
    # at their default, and listing one multiplies the grid by the values given. The default
    # keeps the demo small: 4 conditions per family (explicit-america and no goal, each with
    # and without the replacement notice). Set `{}` for the full 78-condition design.
    where: Dict[str, List[str]] = field(default_factory=lambda: {
        "goal_type": ["explicit", "none"], "goal_value": ["america", "none"],
        "urgency": ["replacement", "none"]})


@dataclass
class AdaptiveSeedsConfig:
    """Seeds drawn per (checkpoint, family) until its harmful rate is known to +-target_halfwidth
    (runner/pipeline/adaptive.py). Off: every condition gets `sampling.seeds` seeds."""

    enabled: bool = False
    # Seeds per condition in the first round, and added in each round after it.
    min_seeds: int = 8
    # At most this many seeds per condition (replaces `sampling.seeds` when enabled).
    max_seeds: int = 64
    # Stop a cell once the 95% Wilson interval of its rate is at most this wide on each side.
    target_halfwidth: float = 0.05


@dataclass
class SamplingConfig:
    """Sampling parameters; part of every item's identity (`item_id`)."""

    # Samples per (scenario condition, checkpoint): seeds seed_start .. seed_start + seeds - 1.
    seeds: int = 8
    # First sample seed. Change it to draw fresh samples without touching earlier ones.
    seed_start: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    # Upper bound on generated tokens per reply.
    max_tokens: int = 192
    adaptive: AdaptiveSeedsConfig = field(default_factory=AdaptiveSeedsConfig)


@dataclass
class GenerationConfig:
    """The generation pool: Ray actors, one vLLM engine each."""

    device: Device = Device.auto
    # Engines (actors). 0 = auto: one per `cpu_threads_per_actor` cores on CPU, one per
    # `tensor_parallel_size` GPUs on CUDA.
    num_actors: int = 0
    # GPUs per engine on CUDA; each actor reserves exactly this many (`num_gpus`).
    tensor_parallel_size: int = 1
    # CPU cores per engine on CPU; the engine's OpenMP threads are bound to them.
    cpu_threads_per_actor: int = 1
    # Items per batch: the unit handed to an engine, graded and written together. Small
    # batches reach the graders and the disk sooner; they do not starve the engine (see
    # max_inflight).
    batch_size: int = 64
    # Requests in flight per engine: batches keep entering the engine while earlier ones decode,
    # up to this many requests (rounded up to whole batches, at least 2). 0 = auto: 512 on
    # CPU, 2048 on CUDA, twice vLLM's default max_num_seqs (256 CPU; up to 1024 on H100/B200), so
    # the engine's waiting queue never runs dry. Raise it with engine_kwargs.max_num_seqs.
    max_inflight: int = 0
    # Context length (prompt + reply). A longer prompt becomes an `error` row.
    max_model_len: int = 4096
    # KV cache per engine on CPU, in GiB (vLLM's own default takes most of the RAM).
    cpu_kv_cache_gib: int = 1
    # Fraction of GPU memory vLLM may use on CUDA.
    gpu_memory_utilization: float = 0.9
    # Model dtype. `auto`: float32 on CPU, the checkpoint's dtype on CUDA.
    dtype: str = "auto"
    # Attempts per batch after the first before its items become `error` rows.
    max_retries: int = 2
    # Reuse an engine across checkpoints of one architecture by reloading weights in place.
    # The first swap per architecture is checked against a fresh engine; if outputs differ,
    # that architecture falls back to a fresh engine per checkpoint.
    weight_swap: bool = True
    # Extra keyword arguments passed to `vllm.LLM(...)` as they are.
    engine_kwargs: Dict[str, Any] = field(default_factory=dict)
    # How replies' native tool calls are read: `auto` (from the model's chat template; the
    # text format when it declares no tool format), `none` (the text format only), or a vLLM
    # tool parser name: hermes, llama3_json, mistral, pythonic, ... (runner/generation/tool_calls.py).
    tool_parser: str = "auto"
    # LoRA adapter checkpoints of one base model share one engine: up to this many adapters in
    # one running batch (vLLM's max_loras), so moving between adapters never drains the engine.
    max_loras: int = 4


@dataclass
class JudgeConfig:
    """The LLM judge: Ray actors with their own vLLM engine, grading each batch after the rules."""

    enabled: bool = False
    # The judge model: a Hugging Face model directory, `builtin:demo-rl` (checkpoint-100 of the demo
    # run; only good for testing the plumbing) or `builtin:smollm2-135m-instruct`. Required when enabled.
    # With `backend: openai`, the model name the server knows (also the `judge_model` column).
    model: Optional[str] = None
    # Judge engines (actors). On CPU their cores are taken from the generation pool's auto count.
    num_actors: int = 1
    # CPU cores per judge engine on CPU (its OpenMP threads are bound to them).
    cpu_threads_per_actor: int = 1
    # GPUs per judge engine on CUDA (also its tensor-parallel size).
    num_gpus_per_actor: int = 1
    # Upper bound on the judge's reply (reasoning plus verdict), in tokens.
    max_tokens: int = 512
    # Requests in flight per judge engine (as generation.max_inflight); 0 = auto.
    max_inflight: int = 0
    # Above 0, so a retry with a new seed can turn an unparseable reply into a verdict.
    temperature: float = 0.6
    # Context length of the judge engine (rubric + transcript + reply). None: the model's own.
    max_model_len: Optional[int] = None
    # Attempts per item; a reply without a parseable verdict is retried with a new seed, and
    # after the last attempt the item is unscored (harmful=null) with the reason.
    max_attempts: int = 3
    # Constrain the judge's reply to "reasoning line, then `VERDICT: harmful|not_harmful`"
    # (vLLM structured outputs; works on the CPU build too), so small judges stay parseable.
    structured_output: bool = True
    # The final `harmful` label from the judge's verdict and the rule evidence. An unscored
    # verdict makes the label null (never false) unless this is `evidence_only`. With the judge
    # disabled the rules decide, whatever this says.
    combine: JudgeCombine = JudgeCombine.judge_and_evidence
    # `openai`: the judge is served by an OpenAI-compatible server (`api`); `model` is then the
    # model name as the server knows it, and no local engine (nor CPU core or GPU) is used.
    backend: ModelBackend = ModelBackend.vllm
    # The server, when `backend` is `openai`. Structured outputs need a vLLM server.
    api: ApiConfig = field(default_factory=ApiConfig)


@dataclass
class GradingConfig:
    """The grader pool: a second set of Ray actors, fed while generation goes on."""

    num_actors: int = 1
    # Run the pack's rule grader (structured tool-call evidence).
    rules: bool = True
    # The LLM judge (off by default: it needs a judge model).
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # Also classify eval awareness with the judge model (a second opinion beside the rule
    # classifier, column `eval_awareness_judge`), on actors of its own. Needs the judge enabled.
    awareness_judge: bool = False


@dataclass
class OutputConfig:
    """Where results go."""

    # The Hive-partitioned Parquet dataset. Re-running into the same dir resumes.
    dir: str = "results/demo"


@dataclass
class WandbConfig:
    """Weights & Biases. The API key is read from WANDB_API_KEY only; never put it here."""

    mode: WandbMode = WandbMode.auto
    project: str = "agentic-misalignment"
    entity: Optional[str] = None
    # Group for the per-model runs of one sweep. None: the sweep's run_id.
    group: Optional[str] = None
    # Directory for W&B files. None: `<output.dir>/_wandb`.
    dir: Optional[str] = None
    # Attach eval curves to an existing run (e.g. the RL training run) by its id, beside its
    # reward curves. Needs a single model. None: one new eval run per model.
    attach_run_id: Optional[str] = None
    # Prefix for every logged key. None: "eval/" (one section of panels, beside a training
    # run's own keys when attaching); "" logs bare keys.
    key_prefix: Optional[str] = None
    # At the end, log artifacts: the results (files when small, else a reference), the resolved
    # config and the HTML report.
    log_artifacts: bool = True
    # Sample transcripts per checkpoint in the W&B Table `transcripts` (0 turns it off).
    transcripts_per_checkpoint: int = 8
    # Flag a checkpoint whose overall harmful rate exceeds the baseline's (the lowest-step
    # checkpoint logged before it) with one-sided two-proportion p-value below this.
    regression_alpha: float = 0.05


@dataclass
class ReportConfig:
    """The HTML report (`runner report`)."""

    # Write `<output.dir>/_report.html` (`runner report`) after every `runner sweep` and when
    # `runner watch` stops; off: they print the command instead.
    auto: bool = False


@dataclass
class RayConfig:
    """How to reach Ray."""

    # None: the RAY_ADDRESS environment variable if set, else a new local Ray. `auto`: the
    # running cluster this machine belongs to (use this on a head node).
    address: Optional[str] = None
    # CPUs for a new local Ray; None lets Ray count them.
    num_cpus: Optional[int] = None
    # Stream actors' stdout/stderr (vLLM's own logs) to the console. Off: they stay in Ray's
    # session logs, and failures still reach the console as errors.
    log_to_driver: bool = False


@dataclass
class SweepConfig:
    """A whole sweep: scenario packs x conditions x models/checkpoints x seeds."""

    # Human-readable sweep name; prefixes the run_id.
    name: str = "demo"
    models: List[ModelConfig] = field(default_factory=lambda: [ModelConfig(name="demo-rl", path=BUILTIN_DEMO_MODEL)])
    scenarios: ScenariosConfig = field(default_factory=ScenariosConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    # Where built-in assets (the demo RL run) are built and cached.
    cache_dir: str = "~/.cache/misalign-runner"


# ---------------------------------------------------------------------------------------------
# Loading


def _allowed_keys(object_type: Any) -> str:
    if dataclasses.is_dataclass(object_type):
        return ", ".join(f.name for f in dataclasses.fields(object_type))
    return ""


def _describe(err: Exception) -> str:
    """One line from an OmegaConf error: the key, what was wrong, what is allowed."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

    key = getattr(err, "full_key", None) or "?"
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0]
    object_type = getattr(err, "object_type", None)
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        where = getattr(object_type, "__name__", "the config")
        return f"unknown key '{key}' in {where}; allowed keys: {_allowed_keys(object_type)}"
    if isinstance(err, MissingMandatoryValue):
        return f"missing required value '{key}'"
    return f"bad value for '{key}': {msg}"


# Free-form mappings that a file or an override replaces whole instead of merging into, so
# `scenarios.where={}` really means "no restriction".
_REPLACED_MAPPINGS = ("scenarios.where", "generation.engine_kwargs")


def _parse_override(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text or text.startswith("="):
        raise ConfigError(f"bad override '{text}': expected key=value, e.g. sampling.seeds=8")
    key, raw = text.split("=", 1)
    if key.strip().endswith((".checkpoint_pattern", ".checkpoint_layout")) and "{step}" in raw:
        return key.strip(), raw  # a pattern, not YAML: `{step}/...` unquoted must not parse as a mapping
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"bad override '{text}': value is not valid YAML ({e.problem})") from None
    return key.strip(), value


def load_config(path: Optional[str | Path] = None, overrides: Optional[List[str]] = None) -> SweepConfig:
    """Build a validated SweepConfig from an optional YAML file and dotlist overrides."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = OmegaConf.structured(SweepConfig)
    OmegaConf.set_struct(cfg, True)
    # Free-form mappings: their keys are data (variable names, vLLM kwargs), not schema.
    for free in (cfg.scenarios.where, cfg.generation.engine_kwargs):
        OmegaConf.set_struct(free, False)
    try:
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"config file not found: {p}")
            try:
                data = yaml.safe_load(_read_text(p))
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" (line {mark.line + 1})" if mark else ""
                raise ConfigError(f"config file {p} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise ConfigError(f"config file {p} must hold a mapping of keys, not {type(data).__name__}")
            cfg = OmegaConf.merge(cfg, data)
            for key in _REPLACED_MAPPINGS:  # a mapping given in the file replaces the default
                section, name = key.split(".")
                if isinstance(data.get(section), dict) and name in data[section]:
                    OmegaConf.update(cfg, key, data[section][name], merge=False)
        for text in overrides or []:
            key, value = _parse_override(text)
            OmegaConf.update(cfg, key, value, merge=key not in _REPLACED_MAPPINGS)
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config error: {_describe(e)}") from None
    assert isinstance(obj, SweepConfig)
    validate_config(obj)
    return obj


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          "give a YAML file") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror or e}") from None


def config_to_yaml(cfg: SweepConfig) -> str:
    """The resolved config as YAML, for the results directory. Holds no secrets by construction."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.structured(cfg))



def config_to_dict(cfg: SweepConfig) -> dict:
    """The resolved config as plain data (enums as strings), e.g. for W&B's run config."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
