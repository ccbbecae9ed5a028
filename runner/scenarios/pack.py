"""Scenario packs: data (YAML + Jinja templates) loaded, validated and rendered here.

A pack is a directory with a `pack.yaml` (format in `scenarios/README.md`) and its templates.
Templates render in Jinja's sandbox with undefined variables as errors, and the loader renders
every condition (options included) once, so a typo in a pack fails `runner validate` (and every
sweep, before any engine starts), never a sample.

Conditions: the design blocks (each a product of value lists, the pack is their union) give the
base conditions; option variables (`options:` maps each to its default) multiply them only
when `where` asks for other values. An option at its default is left out of the condition id,
so adding an option never changes the ids (or item ids) of existing samples.

Loading and validation live in `loader.py`, tool declarations in `tools.py`, the checks in
`checks.py`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from runner.errors import ScenarioError
from runner.scenarios.checks import CheckSpec
from runner.scenarios.tools import ToolSpec, render_tools_block

__all__ = ["Condition", "ConditionCounts", "RenderedScenario", "ScenarioPack", "count_conditions", "rubric_version"]


@dataclass(frozen=True)
class Condition:
    """One combination of the pack's variable values (design variables, then options)."""

    values: tuple[tuple[str, str], ...]
    # Option variables at their default value: left out of `id`, so ids stay stable when a pack
    # gains an option.
    defaults: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def id(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.values if k not in self.defaults)

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


class ConditionCounts(NamedTuple):
    base: int            # options at their defaults
    with_options: int    # every value of every option


@dataclass(frozen=True)
class RenderedScenario:
    """What the agent sees for one condition, plus the checks with names filled in."""

    family: str
    condition: str
    system: str
    user: str
    checks: tuple[CheckSpec, ...]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


@dataclass
class ScenarioPack:
    name: str
    root: Path
    description: str
    harmful_act: str
    templates: dict[str, str]
    context: dict[str, Any]
    # variable -> value -> fields (string fields already rendered against `context`)
    variables: dict[str, dict[str, dict[str, Any]]]
    design: list[dict[str, list[str]]]
    tools: dict[str, ToolSpec]
    checks: list[CheckSpec]
    # option variable -> default value
    options: dict[str, str] = field(default_factory=dict)
    # What the LLM judge is told counts as the harmful act and what does not (optional).
    rubric: str = ""
    digest: str = ""
    _env: Any = field(default=None, repr=False)
    _compiled: dict = field(default_factory=dict, repr=False)
    _check_deps: tuple | None = field(default=None, repr=False)
    _checks_cache: dict = field(default_factory=dict, repr=False)
    _values: dict | None = field(default=None, repr=False)

    @property
    def rubric_version(self) -> str:
        """A hash of the rubric text: judge verdicts under different rubrics are told apart."""
        return rubric_version(self.rubric)

    # -- conditions ---------------------------------------------------------------------------
    @property
    def variable_names(self) -> list[str]:
        """Design variables, then option variables; the order of values in a condition."""
        return self.design_variables + list(self.options)

    @property
    def design_variables(self) -> list[str]:
        return [v for v in self.variables if v not in self.options]

    def conditions(self, where: dict[str, list[str]] | None = None) -> Iterator[Condition]:
        """The conditions selected by `where`, in a stable order.

        A design variable named in `where` keeps only the listed values; an option variable takes
        the listed values, or only its default when `where` does not name it. So `conditions()`
        is the base design and `where={"scratchpad": ["private", "absent"]}` doubles it. Variables this
        pack does not have are ignored (a sweep's `where` spans several packs).
        """
        where = where or {}
        design_vars = self.design_variables
        option_axes = [[v for v in self.variables[o] if v in where[o]] if o in where else [default]
                        for o, default in self.options.items()]
        seen: set[Condition] = set()
        for block in self.design:
            axes = [[v for v in block[name] if name not in where or v in where[name]] for name in design_vars]
            for combo in itertools.product(*axes, *option_axes):
                values = tuple(zip(self.variable_names, combo))
                defaults = frozenset(o for o, v in values if self.options.get(o) == v)
                cond = Condition(values, defaults)
                if cond not in seen:
                    seen.add(cond)
                    yield cond

    def all_option_values(self) -> dict[str, list[str]]:
        """A `where` selecting every value of every option (the largest grid the pack offers)."""
        return {o: list(self.variables[o]) for o in self.options}

    def condition_from_id(self, condition_id: str) -> Condition:
        """The condition with this id (options not named are at their defaults)."""
        given: dict[str, str] = {}
        for part in filter(None, condition_id.split(",")):
            k, sep, v = part.partition("=")
            if not sep or k not in self.variables or v not in self.variables[k]:
                raise ScenarioError([f"{self.name}: '{part}' in condition id {condition_id!r} is not a variable=value of this pack"])
            given[k] = v
        missing = [v for v in self.design_variables if v not in given]
        if not missing:
            for cond in self.conditions({k: [v] for k, v in given.items()}):
                return cond
        raise ScenarioError([f"{self.name}: no condition {condition_id!r} in the design"])

    # -- rendering ----------------------------------------------------------------------------
    def tool_args(self) -> dict[str, list[str]]:
        return {t.name: list(t.args) for t in self.tools.values()}

    def tool_schemas(self) -> list[dict]:
        """The tools as OpenAI function declarations (chat templates' `tools=`, API requests)."""
        return [t.schema() for t in self.tools.values()]

    def render(self, condition: Condition) -> RenderedScenario:
        ctx = self._template_context(condition)
        system = self._env.get_template(self.templates["system"]).render(ctx)
        user = self._env.get_template(self.templates["user"]).render(ctx)
        return RenderedScenario(self.name, condition.id, _tidy(system), _tidy(user), self._render_checks(condition, ctx))

    def _render_checks(self, condition: Condition, ctx: dict[str, Any]) -> tuple[CheckSpec, ...]:
        # Check patterns usually depend on the context only: render them once per combination
        # of the variables they actually mention, not once per condition.
        if self._check_deps is None:
            from jinja2 import meta

            names: set[str] = set()
            for c in self.checks:
                for ops in c.match.values():
                    for pats in ops.values():
                        for p in pats:
                            names |= meta.find_undeclared_variables(self._env.parse(p))
            self._check_deps = tuple(v for v in self.variables if v in names or "values" in names)
        key = tuple(v for k, v in condition.values if k in self._check_deps)
        if key not in self._checks_cache:
            self._checks_cache[key] = tuple(
                CheckSpec(c.id, c.description, c.tool, c.label,
                          {f: {op: [self._compile(p).render(ctx) for p in pats] for op, pats in ops.items()}
                           for f, ops in c.match.items()})
                for c in self.checks
            )
        return self._checks_cache[key]

    def _compile(self, source: str):
        t = self._compiled.get(source)
        if t is None:
            t = self._compiled[source] = self._env.from_string(source)
        return t

    def _template_context(self, condition: Condition) -> dict[str, Any]:
        ctx: dict[str, Any] = dict(self.context)
        # Every value's fields, so a template can look up another value by name
        # (`values.goal_value[goal_value.opposite].goal`), hyphens and all.
        if self._values is None:
            self._values = {var: {v: {"id": v, **f} for v, f in vals.items()} for var, vals in self.variables.items()}
        ctx["values"] = self._values
        for var, value in condition.values:
            ctx[var] = ctx["values"][var][value]
        ctx["tools_block"] = render_tools_block(self.tools.values())
        return ctx


def rubric_version(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:12]


def _tidy(text: str) -> str:
    """Strip, and collapse runs of blank lines that conditional template blocks leave behind."""
    return re.sub(r"\n{3,}", "\n\n", text.strip()) + "\n"


def count_conditions(pack: ScenarioPack) -> ConditionCounts:
    """(base conditions, conditions with every option value) for reports such as `runner validate`."""
    base = sum(1 for _ in pack.conditions())
    return ConditionCounts(base, base * math.prod(len(pack.variables[o]) for o in pack.options))
