"""Small helpers the layouts share."""

from __future__ import annotations

import json

from runner.checkpoints.layout import Candidate, RunListing, step_regexes

# Frameworks that write no completion marker: besides whole weights, wait until nothing in the
# step directory has changed for this long (tokenizer and config files land after the weights).
# `models[].complete_after_seconds` overrides it.
NO_MARKER_QUIET_SECONDS = 30.0


def has_full_weights(run: RunListing, rel: str) -> bool:
    """Any full-model weight file directly in `rel` (adapter files do not count)."""
    for f in run.files_below(rel):
        if "/" in f or f.startswith("adapter_model"):
            continue
        if f.endswith(".safetensors") or (f.startswith("pytorch_model") and f.endswith(".bin")):
            return True
    return False


def is_model_dir(run: RunListing, rel: str) -> bool:
    """A directory that holds a model's config.json or a PEFT adapter's adapter_config.json."""
    prefix = f"{rel}/" if rel else ""
    return run.has(prefix + "config.json") or run.has(prefix + "adapter_config.json")


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def root_model(run: RunListing, steps: dict[int, str], pattern: str = "checkpoint-{step}") -> list[Candidate]:
    """The run directory itself when it also holds a model: the trainer's final save
    (`trainer.save_model(output_dir)`). It counts as the final step when its step is known
    from a `trainer_state.json` beside it (`trainer.save_state()`); otherwise it is left out,
    with a warning, rather than guessed.
    """
    if not is_model_dir(run, ""):
        return []
    if not steps:  # a single model directory: one checkpoint, its step from its name when it has one
        m = step_regexes(pattern)[0].match(run.root.name)
        return [Candidate(run.root.name, int(m.group(1)) if m else 0, "")]
    step = None
    if run.has("trainer_state.json"):
        try:
            step = json.loads(run.read_text("trainer_state.json")).get("global_step")
        except (ValueError, AttributeError, UnicodeDecodeError):
            step = None
    if not isinstance(step, int) or step < 0:
        run.warnings.append("the run directory itself holds a model (a final save_model) but no trainer_state.json "
                            "gives its step; it is not evaluated (call trainer.save_state() after save_model)")
        return []
    if step in steps:
        run.warnings.append(f"the run directory itself holds the final save of step {step}, the same step as "
                            f"{steps[step]}; evaluated once, as {steps[step]}")
        return []
    run.warnings.append(f"the run directory itself holds a model: evaluated as the final step {step} "
                        f"(from its trainer_state.json), named 'final'")
    return [Candidate("final", step, "")]
