"""A pack's tools: declared once as JSON-schema functions (OpenAI function format), validated here.

    tools:
      - type: function
        function:
          name: forward_email
          description: forwards one of your emails, by its ID, with an optional note on top
          parameters:
            type: object
            properties:
              email_id: {type: string, description: the ID of the email to forward}
              to: {type: string, description: recipient email address(es)}
            required: [email_id, to]

The same declaration reaches the model three ways: as `tools=` through its chat template (native
tool calling), as the `tools` of an OpenAI-compatible request, and as `tools_block`, the
documentation of the text reply format (`<tool_use:name>` blocks) every system prompt ends with,
for models without tool support. The legacy mapping form of format_version 1
(`tools: {name: {description, args: {arg: description}}}`) is still read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# JSON-schema types an argument may have; every value reaches the checks as text.
ARG_TYPES = ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args: dict[str, str]                       # argument -> description, in declaration order
    required: tuple[str, ...] = ()
    types: tuple[tuple[str, str], ...] = ()    # (argument, JSON-schema type) when not "string"

    def schema(self) -> dict:
        """The OpenAI function declaration (what `tools=` and the API get)."""
        types = dict(self.types)
        props = {a: {"type": types.get(a, "string"), "description": d} for a, d in self.args.items()}
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": props, "required": list(self.required)}}}


def tool_entries(raw: Any, label: str, problems: list[str]) -> dict[str, Any]:
    """name -> raw declaration, from the list form or the legacy mapping (includes merge by name)."""
    if raw is None:
        return {}
    if isinstance(raw, dict):  # legacy: {name: {description, args}}
        return {str(k): v for k, v in raw.items()}
    if not isinstance(raw, list):
        problems.append(f"{label}: tools must be a list of function declarations "
                        "({type: function, function: {name, description, parameters}})")
        return {}
    out: dict[str, Any] = {}
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            problems.append(f"{label}: tools[{i}] must be {{type: function, function: {{name, description, parameters}}}}")
            continue
        if name in out:
            problems.append(f"{label}: tool '{name}' is declared twice")
        out[name] = t
    return out


def validate_tool(name: str, decl: Any, where: str, problems: list[str]) -> ToolSpec | None:
    """One declaration (list form or legacy mapping) -> ToolSpec; problems appended, None if unusable."""
    if not NAME_RE.fullmatch(name):
        problems.append(f"{where}: tool name '{name}' must be a lower-case identifier")
        return None
    if isinstance(decl, dict) and "args" in decl and "function" not in decl:  # legacy mapping
        if not isinstance(decl.get("args"), dict) or not decl["args"]:
            problems.append(f"{where}: tools.{name} needs a description and a mapping of args")
            return None
        args = {str(a): str(d) for a, d in decl["args"].items()}
        return ToolSpec(name, str(decl.get("description", "")), args, tuple(args))
    if not isinstance(decl, dict) or decl.get("type", "function") != "function" or not isinstance(decl.get("function"), dict):
        problems.append(f"{where}: tool '{name}' must be {{type: function, function: {{name, description, parameters}}}}")
        return None
    fn = decl["function"]
    for k in sorted(set(fn) - {"name", "description", "parameters", "strict"}):
        problems.append(f"{where}: tool '{name}' has unknown key 'function.{k}' (allowed: name, description, parameters)")
    if not isinstance(fn.get("description"), str) or not fn["description"].strip():
        problems.append(f"{where}: tool '{name}' needs a description (the model reads it)")
    params = fn.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    if not isinstance(params, dict) or params.get("type") != "object" or not isinstance(props, dict) or not props:
        problems.append(f"{where}: tool '{name}' parameters must be {{type: object, properties: {{...}}}} "
                        "with at least one argument")
        return None
    args: dict[str, str] = {}
    types: list[tuple[str, str]] = []
    for arg, p in props.items():
        if not isinstance(p, dict) or p.get("type", "string") not in ARG_TYPES:
            problems.append(f"{where}: tool '{name}' argument '{arg}' must be {{type: {'|'.join(ARG_TYPES)}, "
                            f"description: ...}}")
            continue
        if not NAME_RE.fullmatch(str(arg)):
            problems.append(f"{where}: tool '{name}' argument '{arg}' must be a lower-case identifier")
        args[str(arg)] = str(p.get("description", ""))
        if p.get("type", "string") != "string":
            types.append((str(arg), p["type"]))
    required = params.get("required") or []
    if not isinstance(required, list) or any(r not in props for r in required):
        problems.append(f"{where}: tool '{name}' parameters.required must list declared arguments "
                        f"(arguments: {', '.join(props)})")
        required = []
    return ToolSpec(name, str(fn.get("description", "")), args, tuple(required), tuple(types))


def render_tools_block(tools: Iterable[ToolSpec]) -> str:
    """The tool documentation every system prompt includes, in the documented text reply format."""
    lines = ["To act, write one block per tool call in exactly this form:", ""]
    for t in tools:
        lines.append(f"<tool_use:{t.name}>")
        lines += [f"{arg}: <{desc}>" for arg, desc in t.args.items()]
        lines.append(f"</tool_use:{t.name}>")
        lines.append(f"({t.description})")
        lines.append("")
    lines.append("You may call several tools, one block each. Text outside the blocks is not sent anywhere.")
    return "\n".join(lines)


__all__ = ["ToolSpec", "render_tools_block", "tool_entries", "validate_tool"]
