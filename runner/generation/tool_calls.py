"""Native tool calls: which of vLLM's tool parsers reads a model's replies, and the parser itself.

Open models are trained to call tools in their own format (Qwen/Hermes `<tool_call>{json}`
blocks, Llama 3 JSON objects, Mistral `[TOOL_CALLS]`, pythonic `[f(x=1)]`). The scenario's tools
reach the model through its chat template (`tools=`), and its replies are parsed here, in the
generation stage, because the parsers need the model's tokenizer:

    name, why = pick_parser(tokenizer.chat_template, "auto")     # ("hermes", "the chat template ...")
    parser = build_reply_parser(tokenizer, name)
    calls = parser.parse(reply_text, tool_args)                   # list[runner.scenarios.ToolCall]

`parse` gives the same `ToolCall` objects as the text format's parser
(`runner/scenarios/toolcalls.py`), so the rule checks cannot tell the formats apart. A reply
without native calls falls back to the text format (`<tool_use:name>` blocks), so a model
without tool support, or one that follows the system prompt's text instructions, still parses.
Drafts inside a closed `<scratchpad>`/`<think>` are removed first, in every format: a call the
agent only drafted privately is not an act.

vLLM is imported only when a native parser is built (`tool_parser=none` needs no vLLM).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Sequence

from runner.errors import ConfigError
from runner.scenarios.toolcalls import PRIVATE_RE, ToolCall, build_call, normalise_text, parse_tool_calls

log = logging.getLogger(__name__)

AUTO = "auto"
NONE = "none"
# Chat-template markers that name the format a model was trained to call tools in, in the
# order they are tried (a pythonic Llama template may also mention JSON, so it goes first).
TEMPLATE_MARKERS: tuple[tuple[str, str], ...] = (
    ("<|python_start|>", "llama4_pythonic"),
    ("[func_name1(", "pythonic"),
    ("<tool_call>", "hermes"),
    ("[TOOL_CALLS]", "mistral"),
    ("[AVAILABLE_TOOLS]", "mistral"),
    ("<|python_tag|>", "llama3_json"),
)


def known_parsers() -> list[str]:
    """Every parser name vLLM registers (imports vLLM's tool-parser registry, not the engine)."""
    from vllm.tool_parsers import ToolParserManager

    return ToolParserManager.list_registered()


def pick_parser(chat_template: str | None, configured: str = AUTO) -> tuple[str, str]:
    """(parser name, why) for a model's chat template and `generation.tool_parser`.

    `none`: the text format only. A name: that vLLM parser. `auto`: from the chat template's
    markers (TEMPLATE_MARKERS); a template that never renders `tools` gets the text format.
    """
    if configured == NONE:
        return NONE, "generation.tool_parser=none: the text format (<tool_use:...> blocks) only"
    if configured != AUTO:
        return configured, f"generation.tool_parser={configured}"
    template = chat_template or ""
    if "tools" not in template:
        return NONE, "auto: the chat template does not render `tools`; the text format only"
    for marker, name in TEMPLATE_MARKERS:
        if marker in template:
            return name, f"auto: the chat template writes tool calls with {marker!r}"
    return NONE, "auto: the chat template renders `tools` but shows no known call format; the text format only"


def template_of(tokenizer) -> str | None:
    """The tokenizer's chat template (a dict of named templates is searched as one text)."""
    t = getattr(tokenizer, "chat_template", None)
    if isinstance(t, dict):
        return "\n".join(str(v) for v in t.values())
    return t


class ReplyParser:
    """Parses replies in one native format, then the text format when no native call is found."""

    def __init__(self, name: str, why: str, vllm_parser: Any = None):
        self.name = name            # the vLLM parser's name, or "none"
        self.why = why              # how it was picked (logged, and shown by tests)
        self._parser = vllm_parser
        self._request = None

    def native(self, text: str, tool_args: dict[str, list[str]] | None = None) -> list[ToolCall]:
        """The calls vLLM's parser finds in `text` (private drafts removed); [] without one."""
        if self._parser is None:
            return []
        public = normalise_text(PRIVATE_RE.sub("", text)).strip()  # pythonic wants the call list alone
        try:
            info = self._parser.extract_tool_calls(public, self._chat_request())
        except Exception as e:  # noqa: BLE001 -- a parser bug must not lose the reply: text fallback
            log.warning("tool parser %s failed on a reply (%s: %s); using the text format", self.name,
                        type(e).__name__, e)
            return []
        if not info.tools_called:
            return []
        return [native_call(c.function.name, c.function.arguments, public, tool_args) for c in info.tool_calls]

    def parse(self, text: str, tool_args: dict[str, list[str]] | None = None) -> list[ToolCall]:
        return self.native(text, tool_args) or parse_tool_calls(text, tool_args)

    def _chat_request(self):
        # vLLM's parsers take the request they serve; none of the four we test reads more than
        # its tools, so one minimal request is built once.
        if self._request is None:
            from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

            self._request = ChatCompletionRequest(model="runner", messages=[{"role": "user", "content": "-"}])
        return self._request


def native_call(name: str, arguments: Any, text: str = "", tool_args: dict[str, list[str]] | None = None) -> ToolCall:
    """A `ToolCall` from a native (OpenAI-shaped) call: `arguments` a JSON text or a mapping.

    Names and argument keys are matched to the declared tools (case- and separator-insensitive,
    an undeclared argument makes the call malformed) and values normalised and kept as strings
    (non-strings as JSON), exactly as the text parser does, so evidence is the same whatever the format.
    """
    args: Any = arguments
    if isinstance(arguments, str):
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            args = {"arguments": arguments}  # kept, so a check or the judge can still see it
    if not isinstance(args, dict):
        args = {"arguments": json.dumps(args)}
    at = re.search(re.escape(str(name).strip()), text, re.IGNORECASE) if text else None
    args = {k: normalise_text(v) if isinstance(v, str) else v for k, v in args.items()}
    return build_call(normalise_text(str(name)), args, tool_args, offset=at.start() if at else 0)


def build_reply_parser(tokenizer, configured: str = AUTO) -> ReplyParser:
    """The parser for a loaded model; ConfigError (one line) for a parser vLLM does not have or
    one the model's tokenizer cannot support (llama3_json needs `<|python_tag|>` in the vocab)."""
    name, why = pick_parser(template_of(tokenizer), configured)
    if name == NONE:
        return ReplyParser(NONE, why)
    from vllm.tool_parsers import ToolParserManager

    try:
        cls = ToolParserManager.get_tool_parser(name)
    except KeyError:
        raise ConfigError(f"config error: generation.tool_parser: vLLM has no tool parser '{name}' "
                          f"(auto, none, or one of: {', '.join(known_parsers())})") from None
    try:
        parser = cls(tokenizer)
    except Exception as e:  # noqa: BLE001 -- e.g. a token the format needs is missing
        raise ConfigError(f"config error: generation.tool_parser={name} does not work with this model's tokenizer: "
                          f"{type(e).__name__}: {e}") from None
    log.info("tool parser: %s (%s)", name, why)
    return ReplyParser(name, why, parser)


def attach_tool_calls(parser: ReplyParser | None, completions: Sequence, items: Sequence) -> list:
    """Each completion with the calls its reply makes (`Completion.tool_calls`), parsed by the
    model's parser; unchanged when the parser is `none` (the rule grader then parses the text)."""
    import dataclasses

    if parser is None or parser.name == NONE:
        return list(completions)
    return [dataclasses.replace(c, tool_calls=tuple(parser.parse(c.text, tool_args_of(it.tool_list()))))
            for c, it in zip(completions, items)]


def tool_args_of(tools: Sequence[dict] | None) -> dict[str, list[str]] | None:
    """tool name -> argument names, from OpenAI function schemas (for the text fallback)."""
    if not tools:
        return None
    out = {}
    for t in tools:
        fn = t.get("function", t)
        out[str(fn["name"]).lower()] = list((fn.get("parameters") or {}).get("properties", {}))
    return out


__all__ = ["AUTO", "NONE", "ReplyParser", "TEMPLATE_MARKERS", "attach_tool_calls", "build_reply_parser", "known_parsers",
           "native_call", "pick_parser", "template_of", "tool_args_of"]
