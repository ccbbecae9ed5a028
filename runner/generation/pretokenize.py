"""Prompts rendered and tokenized before they reach an engine's actor, in the driver.

An engine actor on CPU is one core and one GIL: rendering the chat template for the next batches
there takes turns with the loop that steps the engine. So the source renders each prompt here,
with the checkpoint's own tokenizer and chat template (the pack's tools declared, as the engine
would), and hands the token ids over with the item (`WorkItem.prompt_ids`); the engine sends
them as they are. Every seed of a condition has the same prompt: it is tokenized once.

Only for checkpoints whose tokenizer is a local directory served by a local engine; anything
else (an API model, a tokenizer behind a URI, a template that rejects the prompt) is left
without ids and the actor renders it as before, with the same error row on failure.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from runner.checkpoints import Checkpoint
from runner.grid import WorkItem

log = logging.getLogger(__name__)

# Conditions whose ids are kept per tokenizer (a sweep renders a few hundred conditions).
_CACHE_SIZE = 4096


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def render_ids(tokenizer, item: WorkItem) -> tuple[int, ...]:
    """The chat template's token ids for `item`, as the engine's backend renders them."""
    tools = item.tool_list()
    extra = {"tools": tools} if tools else {}
    ids = tokenizer.apply_chat_template(item.messages(), add_generation_prompt=True, tokenize=True, **extra)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    return tuple(int(i) for i in ids)


class PromptTokenizer:
    """`prepare(ckpt, items)`: the items with `prompt_ids` filled where it can be done here."""

    def __init__(self, local: Callable[[Checkpoint], bool], load: Callable[[str], object] = load_tokenizer):
        self.local = local          # is this checkpoint served by a local engine?
        self._load = load
        self._tokenizers: dict[str, object] = {}
        self._ids: dict[tuple, tuple[int, ...] | None] = {}
        self._lock = threading.Lock()
        self.rendered = 0           # prompts rendered (conditions, not seeds)

    def _tokenizer(self, ckpt: Checkpoint):
        path = ckpt.tokenizer
        if path not in self._tokenizers:
            tok = None
            if self.local(ckpt) and path and "://" not in path and Path(path).is_dir():
                try:
                    tok = self._load(path)
                except Exception as e:  # noqa: BLE001 -- the actor's engine loads it, or reports why not
                    log.warning("tokenizer %s does not load here (%s); its engine renders the prompts", path, e)
            self._tokenizers[path] = tok
        return self._tokenizers[path]

    def prepare(self, ckpt: Checkpoint, items: list[WorkItem]) -> list[WorkItem]:
        with self._lock:
            tok = self._tokenizer(ckpt)
            if tok is None:
                return items
            out = []
            for it in items:
                key = (ckpt.tokenizer, it.system, it.user, it.tools)
                if key not in self._ids:
                    try:
                        self._ids[key] = render_ids(tok, it)
                        self.rendered += 1
                    except Exception:  # noqa: BLE001 -- the engine's own render gives the error row
                        self._ids[key] = None
                    while len(self._ids) > _CACHE_SIZE:
                        del self._ids[next(iter(self._ids))]
                ids = self._ids[key]
                out.append(replace(it, prompt_ids=ids) if ids is not None else it)
            return out


def build_prompt_tokenizer(cfg) -> PromptTokenizer:
    """For a sweep: checkpoints of models with a local engine (`backend: vllm`) are tokenized here."""
    from runner.generation.backends import BACKENDS

    local_models = {m.name for m in cfg.models if BACKENDS[m.backend].serves_locally}
    return PromptTokenizer(lambda ckpt: ckpt.model in local_models)


__all__ = ["PromptTokenizer", "build_prompt_tokenizer", "load_tokenizer", "render_ids"]
