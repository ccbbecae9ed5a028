"""`runner validate` (lint scenario packs) and `runner config` (print the resolved config)."""

from __future__ import annotations

from pathlib import Path

from runner.config import config_to_yaml, load_config
from runner.plan import BUILTIN_SCENARIOS
from runner.scenarios import load_packs
from runner.scenarios.lint import summarize


def validate_command(pack_dirs: list[str]) -> int:
    print(summarize(load_packs([Path(d) for d in pack_dirs] or [BUILTIN_SCENARIOS])))
    return 0


def config_command(config: str | None, overrides: list[str]) -> int:
    """The config `sweep` would run with, every default filled in, validated; no secrets by construction."""
    print(config_to_yaml(load_config(config, overrides)), end="")
    return 0


__all__ = ["config_command", "validate_command"]
