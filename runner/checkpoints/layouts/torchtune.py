"""torchtune (`torchtune/training/checkpointing/_checkpointer.py`, `FullModelHFCheckpointer`).

`output_dir/epoch_{E}/` (or `step_{N}/` when saving by step): full HF weights
(`model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`), the input directory's
config and tokenizer files copied beside them, and with LoRA recipes `adapter_model.*` +
`adapter_config.json` in the same directory (the full weights there are already merged).
`recipe_state.pt` for intermediate checkpoints. No completion marker.
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import NO_MARKER_QUIET_SECONDS, join

PATTERNS = ("epoch_{step}", "step_{step}")


def _steps(run: RunListing) -> list[tuple[str, int]]:
    return [t for p in PATTERNS for t in run.step_dirs(p)]


def recognise(run: RunListing) -> bool:
    return any(run.has(join(n, "config.json")) or run.has(join(n, "recipe_state.pt")) for n, _ in _steps(run))


def candidates(run: RunListing) -> list[Candidate]:
    out = [Candidate(n, s, n, quiet_seconds=NO_MARKER_QUIET_SECONDS, full_only=True) for n, s in _steps(run)]
    return sorted(out, key=lambda c: (c.step, c.name))


LAYOUT = Layout("torchtune", "torchtune", recognise, candidates)
