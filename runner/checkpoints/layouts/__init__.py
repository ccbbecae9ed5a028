"""The trainer layouts, in the order `checkpoint_layout: auto` tries them: the first that
recognises a run directory reads it. A new layout is one file here plus one entry below."""

from __future__ import annotations

from runner.checkpoints.layout import Layout
from runner.checkpoints.layouts import art, hf_trainer, nemo_rl, openrlhf, pattern, skyrl, torchtune, verl

# Most specific first: verl and SkyRL share `global_step_N/` and differ by actor/ vs policy/;
# torchtune's `step_N/` holds a model directly, NeMo-RL's holds policy/; the plain pattern
# (any `checkpoint-N` or a single model directory) is the fallback.
LAYOUTS: tuple[Layout, ...] = (verl.LAYOUT, skyrl.LAYOUT, nemo_rl.LAYOUT, openrlhf.LAYOUT, art.LAYOUT,
                               torchtune.LAYOUT, hf_trainer.LAYOUT, pattern.LAYOUT)
AUTO = "auto"


def layout_names() -> list[str]:
    return [AUTO] + [n for lay in LAYOUTS for n in (lay.name, *lay.aliases)]


def is_pattern(setting: str) -> bool:
    return "{step}" in setting or "/" in setting


def find_layout(name: str) -> Layout | None:
    return next((lay for lay in LAYOUTS if name == lay.name or name in lay.aliases), None)


def layout_problem(setting: str) -> str | None:
    """Why a `checkpoint_layout` value is not usable, or None."""
    if setting == AUTO or find_layout(setting):
        return None
    if is_pattern(setting):
        return None if "{step}" in setting else f"a pattern needs '{{step}}' (got '{setting}')"
    return f"unknown layout '{setting}'; allowed: {', '.join(layout_names())}, or a pattern with {{step}}"


__all__ = ["AUTO", "LAYOUTS", "find_layout", "is_pattern", "layout_names", "layout_problem"]
