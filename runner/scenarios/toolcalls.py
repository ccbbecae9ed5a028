"""The reply format for tool calls, and a parser that extracts calls from messy model replies.

The documented format (also in `scenarios/README.md`) is one block per call:

    <tool_use:send_email>
    to: kyle.johnson@summitbridge.example
    subject: About this afternoon
    body: Kyle, before you go ahead ...
    (the last field may run over many lines)
    </tool_use:send_email>

A JSON object inside the block is also accepted: `<tool_use:send_email>{"to": "..."}</tool_use:send_email>`.

Tolerated mess, because small and random models produce it: a block inside a Markdown code fence,
upper-case tags, a missing closing tag (the block then ends at the next opening tag or at the end
of the reply), quoted values, trailing commas, and `key = value`. Field names are recognised only
when they are arguments the tool declares and have not been set yet, so a line such as `Note: ...`
or a second `To: ...` inside a body stays body.

Blocks inside a closed `<scratchpad>...</scratchpad>` or `<think>...</think>` are drafts the agent
wrote privately; they are not calls. (An unclosed scratchpad hides nothing: we cannot tell where
it was meant to end.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_OPEN = re.compile(r"<\s*tool_use\s*:\s*([A-Za-z_][\w-]*)\s*>", re.IGNORECASE)
PRIVATE_RE = re.compile(r"<\s*(scratchpad|think|thinking)\s*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the tool's name and its arguments as strings."""

    tool: str
    args: dict[str, str] = field(default_factory=dict)
    # Where the block starts in the reply (characters), for reports.
    offset: int = 0

    def to_dict(self) -> dict:
        return {"tool": self.tool, "args": dict(self.args)}


def _clean_value(value: str) -> str:
    v = value.strip()
    if v.endswith(","):
        v = v[:-1].rstrip()
    if v.endswith("```"):
        v = v[:-3].rstrip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'`":
        v = v[1:-1]
    return v.strip()


def _parse_fields(body: str, arg_names: set[str] | None) -> dict[str, str]:
    text = body.strip()
    if text.startswith("```"):
        text = re.sub(r"^```\w*\s*", "", text)
        text = re.sub(r"\s*```$", "", text)
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {str(k).lower(): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
        # Almost-JSON (a trailing comma, an unescaped newline): read it line by line instead.
        text = text[1:].rstrip()
        if text.endswith("}"):
            text = text[:-1]

    key_line = re.compile(r"^\s*[\"']?([A-Za-z_][\w]*)[\"']?\s*[:=]\s?(.*)$")
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = key_line.match(line)
        if m:
            name = m.group(1).lower()
            if (arg_names is None or name in arg_names) and name not in fields:
                current = name
                fields[current] = [m.group(2)]
                continue
        if current is not None:
            fields[current].append(line)
    return {k: _clean_value("\n".join(v)) for k, v in fields.items()}


def parse_tool_calls(reply: str, tool_args: dict[str, list[str]] | None = None) -> list[ToolCall]:
    """Every tool call in `reply`, in order.

    `tool_args` maps tool name -> declared argument names; calls to undeclared tools are kept
    (a check may want to see them) but their field names are not restricted.
    """
    calls: list[ToolCall] = []
    private = [(m.start(), m.end()) for m in PRIVATE_RE.finditer(reply)]
    opens = list(_OPEN.finditer(reply))
    for i, m in enumerate(opens):
        if any(a <= m.start() < b for a, b in private):
            continue
        name = m.group(1).lower()
        start = m.end()
        limit = opens[i + 1].start() if i + 1 < len(opens) else len(reply)
        close = re.compile(r"<\s*/\s*tool_use\s*(?::\s*" + re.escape(name) + r")?\s*>", re.IGNORECASE)
        c = close.search(reply, start, limit)
        end = c.start() if c else limit
        declared = None
        if tool_args is not None and name in tool_args:
            declared = {a.lower() for a in tool_args[name]}
        calls.append(ToolCall(tool=name, args=_parse_fields(reply[start:end], declared), offset=m.start()))
    return calls
