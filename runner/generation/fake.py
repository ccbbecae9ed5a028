"""A fake backend for fast unit tests of `Generator` only (never reachable from the CLI)."""

from __future__ import annotations

from typing import Sequence

from runner.checkpoints import Checkpoint
from runner.generation.engine import Completion
from runner.grid import WorkItem


class FakeBackend:
    def __init__(self, replies: dict[str, str] | None = None, fail_on: set[str] | None = None):
        self.replies = replies or {}
        self.fail_on = fail_on or set()
        self.loads: list[str] = []
        self.adapters: list[str] = []   # adapters served beside the loaded engine group

    def load(self, ckpt: Checkpoint) -> None:
        self.loads.append(ckpt.key)

    def use_adapter(self, ckpt: Checkpoint) -> None:
        self.adapters.append(ckpt.key)

    def prompt_length(self, messages, tools=None) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def complete(self, items: Sequence[WorkItem]) -> list[Completion]:
        for it in items:
            if it.item_id in self.fail_on:
                raise RuntimeError(f"fake failure for {it.item_id}")
        return [Completion(self.replies.get(it.item_id, f"reply seed={it.seed}"), 3, "stop") for it in items]
