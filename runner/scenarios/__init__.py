"""Scenario packs: loading, validation, rendering, and the tool-call evidence rules."""

from runner.scenarios.checks import CheckSpec, evaluate_checks, grade_calls, grade_reply
from runner.scenarios.loader import discover_pack_dirs, load_pack, load_packs
from runner.scenarios.pack import Condition, ConditionCounts, RenderedScenario, ScenarioPack, count_conditions
from runner.scenarios.toolcalls import ToolCall, parse_tool_calls
from runner.scenarios.tools import ToolSpec

__all__ = [
    "CheckSpec", "Condition", "ConditionCounts", "RenderedScenario", "ScenarioPack", "ToolCall", "ToolSpec",
    "count_conditions", "discover_pack_dirs", "evaluate_checks", "grade_calls", "grade_reply", "load_pack",
    "load_packs", "parse_tool_calls",
]
