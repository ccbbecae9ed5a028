"""What a trainer layout is: how to recognise a run directory a framework wrote, and where in
it each step's Hugging Face model directory, tokenizer and completion rule are.

A layout reads one recursive listing of the run directory (`RunListing`) and returns
`Candidate`s; `runner.checkpoints.discovery` then checks each candidate's model directory
(config, weights, tokenizer) the same way for every layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from runner.errors import CheckpointError
from runner.remote import Entry, Location


@dataclass(frozen=True)
class Candidate:
    """One step directory as the layout sees it, before its model directory is checked."""

    name: str                    # what results call the checkpoint, e.g. global_step_20
    step: int
    model_rel: str               # the HF model directory, relative to the run directory ('' = itself)
    tokenizer_rels: tuple[str, ...] = ()   # where else this framework puts the tokenizer
    blocked: str | None = None   # the layout's own reason it is not ready (no marker, not in "latest")
    marker: str | None = None    # a file (relative to the run directory) the trainer writes last
    quiet_seconds: float = 0.0   # default quiet period when the framework writes no marker
    full_only: bool = False      # adapter files here sit beside full weights (torchtune LoRA)


@dataclass
class RunListing:
    """Every file and directory below a run directory, read once."""

    root: Location
    files: dict[str, Entry]
    dirs: set[str]
    warnings: list[str] = field(default_factory=list)   # e.g. a step directory named like one but not a step

    @classmethod
    def read(cls, root: Location) -> "RunListing":
        entries = root.entries(recursive=True)
        return cls(root, {e.rel: e for e in entries if not e.is_dir}, {e.rel for e in entries if e.is_dir})

    def has(self, rel: str) -> bool:
        return rel in self.files

    def is_dir(self, rel: str) -> bool:
        return rel == "" or rel in self.dirs

    def children(self, rel: str = "") -> list[str]:
        """Names of the directories directly below `rel`."""
        prefix = f"{rel}/" if rel else ""
        return sorted(d[len(prefix):] for d in self.dirs if d.startswith(prefix) and "/" not in d[len(prefix):])

    def files_below(self, rel: str) -> list[str]:
        prefix = f"{rel}/" if rel else ""
        return [f[len(prefix):] for f in self.files if f.startswith(prefix)]

    def read_text(self, rel: str) -> str:
        return self.root.read_text(rel)

    def step_dirs(self, pattern: str, parent: str = "") -> list[tuple[str, int]]:
        """Directories below `parent` named like `pattern` (`{step}` an integer), in step order.

        A name of the pattern's shape whose step is not an integer (`checkpoint-abc`) is left
        out with a warning: it is likely a checkpoint the user expects to see evaluated.
        """
        rx, shape = step_regexes(pattern)
        found = []
        for name in self.children(parent):
            if m := rx.match(name):
                found.append((name, int(m.group(1))))
            elif shape.match(name):
                self.warnings.append(f"{_join(parent, name)}: named like '{pattern}' but '{shape.match(name).group(1)}' "
                                     f"is not an integer step; not evaluated")
        return sorted(found, key=lambda t: (t[1], t[0]))

    def latest_step(self, rel: str) -> int | None:
        """The integer a framework's "latest" tracker file holds, None when absent or not an integer."""
        if not self.has(rel):
            return None
        try:
            text = self.read_text(rel).strip()
        except (CheckpointError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None


def step_regexes(pattern: str) -> tuple[re.Pattern, re.Pattern]:
    """(the pattern with an integer step, the pattern with any step text) as anchored regexes."""
    esc = re.escape(pattern)
    hole = re.escape("{step}")
    return (re.compile("^" + esc.replace(hole, r"(\d+)") + "$"),
            re.compile("^" + esc.replace(hole, r"([^/]+)") + "$"))


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


@dataclass(frozen=True)
class Layout:
    """A trainer's way of writing checkpoints. One per file in `runner/checkpoints/layouts/`."""

    name: str                                           # what `checkpoint_layout` names
    trainer: str                                        # for messages and the README table
    recognise: Callable[[RunListing], bool]             # is this run directory one of ours?
    candidates: Callable[[RunListing], list[Candidate]]
    aliases: tuple[str, ...] = ()


__all__ = ["Candidate", "Layout", "RunListing", "step_regexes"]
