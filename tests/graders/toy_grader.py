"""A toy grader for the registry test: the whole of what a new grader needs, in one file."""

from __future__ import annotations

from dataclasses import dataclass

from runner.graders.base import GraderEntry, GraderStageSpec


@dataclass(frozen=True)
class Length:
    item_id: str
    chars: int


class LengthGrader:
    name = "length"

    def __init__(self, unit: int):
        self.unit = unit

    def grade(self, pairs):
        return [Length(item.item_id, len(result.response) // self.unit) for item, result in pairs]


def length_stage(ctx):
    return GraderStageSpec(make_kwargs={"unit": 1}, num_actors=1, actor_options=[{"num_cpus": 0}],
                           failed=lambda item, why: Length(item.item_id, -1))


ENTRY = GraderEntry(name="length", make=LengthGrader, stage=length_stage,
                    columns=lambda out: {"finish_reason": None if out is None else f"len={out.chars}"})
