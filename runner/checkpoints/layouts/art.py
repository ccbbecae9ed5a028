"""ART, OpenPipe's Agent Reinforcement Trainer (`src/art/local/service.py`,
`src/art/utils/output_dirs.py`).

Each training step saves a LoRA adapter with the (Unsloth) trainer's `save_model` into
`.art/PROJECT/models/NAME/{step:04d}/` (adapter_config.json + adapter_model.safetensors +
tokenizer); `trajectories/` sits beside them. No completion marker.
"""

from __future__ import annotations

import re

from runner.checkpoints.layout import Candidate, Layout, RunListing
from runner.checkpoints.layouts._common import NO_MARKER_QUIET_SECONDS, join

_STEP = re.compile(r"^\d{4,}$")


def _steps(run: RunListing) -> list[tuple[str, int]]:
    return sorted(((n, int(n)) for n in run.children() if _STEP.match(n)), key=lambda t: t[1])


def recognise(run: RunListing) -> bool:
    return any(run.has(join(n, "adapter_config.json")) for n, _ in _steps(run))


def candidates(run: RunListing) -> list[Candidate]:
    return [Candidate(n, s, n, quiet_seconds=NO_MARKER_QUIET_SECONDS) for n, s in _steps(run)]


LAYOUT = Layout("art", "ART (OpenPipe)", recognise, candidates)
