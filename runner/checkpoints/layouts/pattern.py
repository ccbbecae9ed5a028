"""Plain Hugging Face directories: one model directory, or a run directory of step
subdirectories named like `models[].checkpoint_pattern` (default `checkpoint-{step}`, e.g. the
demo run). A pattern may name a nested model directory (`global_step_{step}/actor/huggingface`).
Complete when the model directory is (config, every weight shard, whole files), plus
`complete_marker` / `complete_after_seconds` when set.
"""

from __future__ import annotations

from runner.checkpoints.layout import Candidate, Layout, RunListing, step_regexes
from runner.checkpoints.layouts._common import is_model_dir, root_model

DEFAULT_PATTERN = "checkpoint-{step}"


def pattern_layout(pattern: str) -> Layout:
    def recognise(run: RunListing) -> bool:
        return is_model_dir(run, "") or bool(candidates(run))

    def candidates(run: RunListing) -> list[Candidate]:
        if "/" not in pattern:
            found = run.step_dirs(pattern)
            return [Candidate(n, s, n) for n, s in found] + root_model(run, {s: n for n, s in found}, pattern)
        rx, shape = step_regexes(pattern)
        out = []
        for d in sorted(run.dirs):
            if m := rx.match(d):
                out.append(Candidate(d.split("/", 1)[0] if "{step}" in pattern.split("/", 1)[0] else d,
                                     int(m.group(1)), d))
            elif (m := shape.match(d)) and "/" not in m.group(1):
                run.warnings.append(f"{d}: named like '{pattern}' but '{m.group(1)}' is not an integer step; "
                                    "not evaluated")
        return sorted(out, key=lambda c: (c.step, c.name))

    return Layout("pattern", "any (plain HF directories)", recognise, candidates)


LAYOUT = pattern_layout(DEFAULT_PATTERN)
