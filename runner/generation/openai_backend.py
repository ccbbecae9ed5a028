"""The OpenAI-compatible backend: chat completions over HTTP, from an existing `vllm serve` or a
hosted API, for the LLM judge and for target models.

    backend = OpenAIBackend(ApiSpec(base_url="http://127.0.0.1:8000/v1"))
    backend.load(ckpt)                       # ckpt.path is the model name as the server knows it
    backend.complete(items)                  # the Generator's protocol (runner/generation/engine.py)
    backend.complete_chats(chats, ...)       # the judge's protocol (runner/graders/judge.py)

Standard library only (urllib + a thread pool): no client package to install or pin. Requests
run at most `max_concurrency` at a time per backend; connection errors, timeouts, 429 and 5xx
are retried with exponential backoff (honouring a numeric `Retry-After`), other 4xx fail at once
with the server's message. The API key is read from the environment variable `api_key_env`
names, only here, and is sent only as the `Authorization` header: never stored in a spec, a
config dump, a row or a log line.

With `vllm_extensions` (the server is `vllm serve`), the backend also uses vLLM's additions to
the API: `structured_outputs: {"regex": ...}` on chat requests (the judge's verdict format),
`POST /tokenize` for exact prompt lengths, and `max_model_len` from `GET /v1/models` for the
context length. Without them (hosted APIs) replies are unconstrained, prompt lengths are
estimated from the text (about 4 characters per token, plus a few tokens per message: the
server stays the judge of what fits and rejects a prompt that does not) and the context length
comes from config.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

from runner.checkpoints import Checkpoint
from runner.errors import ConfigError
from runner.generation.engine import Completion
from runner.grid import WorkItem

log = logging.getLogger(__name__)

# Statuses worth another try: rate limited, or the server (or a proxy in front of it) failed.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 60.0
CHARS_PER_TOKEN = 4        # prompt-length estimate without a tokenizer endpoint
TOKENS_PER_MESSAGE = 4     # role markers and separators a chat template adds per message


@dataclass(frozen=True)
class ApiSpec:
    """Plain API settings an actor receives (built from ApiConfig by the sweep). No secrets."""

    base_url: str                       # up to and including /v1, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    require_api_key: bool = False
    max_concurrency: int = 8
    timeout_seconds: float = 120.0
    max_retries: int = 4
    backoff_seconds: float = 1.0
    vllm_extensions: bool = True
    # Context length (prompt + reply) from config; None: the server's (vLLM reports it).
    context_length: int | None = None


class ApiError(RuntimeError):
    """A request that failed for good: a non-retryable status, or every retry used up."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def read_api_key(spec: ApiSpec, where: str = "api") -> str | None:
    """The key from the environment; ConfigError naming the variable when required and unset."""
    key = os.environ.get(spec.api_key_env) or None
    if key is None and spec.require_api_key:
        raise ConfigError(f"config error: {where}.require_api_key is true but the environment variable "
                          f"{spec.api_key_env} is not set (the key is read from the environment only)")
    return key


def server_root(base_url: str) -> str:
    """`http://h:p/v1` -> `http://h:p`: vLLM serves /tokenize and /health beside /v1, not under it."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class OpenAIBackend:
    """Chat completions against one OpenAI-compatible server, for one model at a time."""

    def __init__(self, spec: ApiSpec, where: str = "api"):
        self.spec = spec
        self.where = where                        # config key prefix, for error messages
        self._key = read_api_key(spec, where)     # kept on the instance only, never in the spec
        self._base = spec.base_url.rstrip("/")
        self._root = server_root(spec.base_url)
        self._pool = ThreadPoolExecutor(max_workers=spec.max_concurrency, thread_name_prefix="openai")
        self._lock = threading.Lock()
        self.model: str | None = None
        self._server_len: int | None = None
        self._tokenize = spec.vllm_extensions     # turned off when the server has no /tokenize
        self.counts = {"requests": 0, "retries": 0}
        self._send_tools = True                   # off once the server refuses `tools`

    def __repr__(self) -> str:  # no key, ever
        return f"OpenAIBackend(base_url={self.spec.base_url!r}, model={self.model!r})"

    # -- HTTP -----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "misalign-runner"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key}"
        return h

    def _request(self, method: str, url: str, body: dict | None = None) -> Any:
        """One JSON request, with retries and backoff. Returns the decoded JSON body."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        attempts = 1 + self.spec.max_retries
        last = ""
        for attempt in range(attempts):
            if attempt:
                with self._lock:
                    self.counts["retries"] += 1
            with self._lock:
                self.counts["requests"] += 1
            retry_after = None
            try:
                req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
                with urllib.request.urlopen(req, timeout=self.spec.timeout_seconds) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code not in RETRY_STATUSES:
                    raise ApiError(f"{method} {url}: HTTP {e.code}: {detail}", e.code) from None
                last = f"HTTP {e.code}: {detail}"
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # incl. timeouts, resets
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
                if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
                    last = f"timed out after {self.spec.timeout_seconds:g}s"
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    snippet = raw[:200].decode("utf-8", "replace")
                    raise ApiError(f"{method} {url}: the reply is not JSON: {snippet!r}") from None
            if attempt + 1 < attempts:
                delay = min(MAX_BACKOFF_SECONDS, self.spec.backoff_seconds * 2 ** attempt)
                delay = max(delay, retry_after or 0.0) * (1 + 0.1 * random.random())  # jitter: no lockstep
                log.info("%s %s failed (%s); retry %d/%d in %.1fs", method, url, last, attempt + 1,
                         self.spec.max_retries, delay)
                time.sleep(delay)
        raise ApiError(f"{method} {url}: gave up after {attempts} attempt(s): {last}")

    def _map(self, fn, args: Sequence) -> list:
        """Run `fn` over `args` at most `max_concurrency` at a time; results in input order."""
        futures = [self._pool.submit(fn, a) for a in args]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    # -- models ---------------------------------------------------------------------------------
    def list_models(self) -> dict[str, dict]:
        """The server's models by id (`GET /v1/models`), with whatever each entry carries."""
        data = self._request("GET", f"{self._base}/models")
        try:
            return {m["id"]: m for m in data["data"]}
        except (KeyError, TypeError):
            raise ApiError(f"GET {self._base}/models: unexpected reply {str(data)[:200]!r}") from None

    def use_adapter(self, ckpt: Checkpoint) -> None:  # a server's models carry no runner-side adapters
        raise ValueError(f"{ckpt.key}: LoRA adapters are served by the vllm backend, not over an API")

    def load(self, ckpt: Checkpoint) -> None:
        """Point the backend at a served model: `ckpt.path` is its name on the server."""
        self.model = ckpt.path
        self._server_len = None
        if self.spec.vllm_extensions:
            models = self.list_models()
            if self.model not in models:
                raise ApiError(f"{self.spec.base_url} does not serve model '{self.model}' "
                               f"(it serves: {', '.join(sorted(models)) or 'nothing'})")
            n = models[self.model].get("max_model_len")
            self._server_len = int(n) if isinstance(n, int) and n > 0 else None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- lengths --------------------------------------------------------------------------------
    def context_length(self) -> int:
        """Prompt + reply budget: the smaller of config's and the server's, whichever are known."""
        known = [n for n in (self.spec.context_length, self._server_len) if n]
        if not known:
            raise ConfigError(f"config error: {self.where}: the server does not report the model's context "
                              "length; set it in config (grading.judge.max_model_len for the judge)")
        return min(known)

    def prompt_length(self, messages: list[dict[str, str]], tools: list[dict] | None = None) -> int:
        """Exact from vLLM's `/tokenize` when the server has it, else the estimate (module doc)."""
        tools = tools if self._send_tools else None  # what the chat request will carry
        if self._tokenize:
            try:
                body = {"model": self.model, "messages": messages, "add_generation_prompt": True}
                if tools:
                    body["tools"] = tools
                reply = self._request("POST", f"{self._root}/tokenize", body)
                return int(reply["count"])
            except ApiError as e:
                if e.status not in (404, 405):
                    raise
                log.warning("%s has no /tokenize; estimating prompt lengths from text", self._root)
                self._tokenize = False
            except (KeyError, TypeError, ValueError):
                raise ApiError(f"POST {self._root}/tokenize: unexpected reply") from None
        return estimate_tokens(messages) + (math.ceil(len(json.dumps(tools)) / CHARS_PER_TOKEN) if tools else 0)

    # -- completions ----------------------------------------------------------------------------
    def _chat(self, body: dict) -> Completion:
        url = f"{self._base}/chat/completions"
        try:
            data = self._request("POST", url, body)
        except ApiError as e:
            if not (e.status == 400 and "tools" in body and "tool" in str(e).lower()):
                raise
            # A server without tool calling (`vllm serve` without --enable-auto-tool-choice
            # --tool-call-parser NAME): the prompt's text format still works; say so once.
            if self._send_tools:
                log.warning("%s refuses `tools` (%s); sending none: replies are read in the text format",
                            self.spec.base_url, str(e)[:200])
            self._send_tools = False
            body = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
            data = self._request("POST", url, body)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            calls = api_tool_calls(choice["message"].get("tool_calls"))
            if calls is not None:
                text = with_call_blocks(text, calls)
            return Completion(text, int(usage.get("completion_tokens") or 0), choice.get("finish_reason"), calls)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise ApiError(f"POST {url}: unexpected reply {json.dumps(data)[:200]!r}") from None

    def _body(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int,
              top_p: float | None = None, regex: str | None = None) -> dict:
        if self.model is None:
            raise RuntimeError("OpenAIBackend: call load(ckpt) before requesting completions")
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                "max_tokens": max_tokens, "seed": seed}
        if top_p is not None:
            body["top_p"] = top_p
        if regex is not None and self.spec.vllm_extensions:
            body["structured_outputs"] = {"regex": regex}  # vLLM's extension (0.10+ name)
        return body

    def complete(self, items: Sequence[WorkItem]) -> list[Completion]:
        bodies = [self._body(it.messages(), temperature=it.sampling.temperature, top_p=it.sampling.top_p,
                             max_tokens=it.sampling.max_tokens, seed=it.engine_seed) for it in items]
        for body, it in zip(bodies, items):
            tools = it.tool_list() if hasattr(it, "tool_list") else None
            if tools and self._send_tools:  # native tool calling; the server's parser fills `tool_calls`
                body["tools"] = tools
                body["tool_choice"] = "auto"
        return self._map(self._chat, bodies)

    def complete_chats(self, chats: Sequence[list[dict[str, str]]], *, temperature: float, max_tokens: int,
                       seeds: Sequence[int], regex: str | None = None) -> list[Completion]:
        """One completion per chat. `regex` is sent only to vLLM servers (`vllm_extensions`)."""
        bodies = [self._body(m, temperature=temperature, max_tokens=max_tokens, seed=s, regex=regex)
                  for m, s in zip(chats, seeds)]
        return self._map(self._chat, bodies)


def api_tool_calls(raw) -> tuple | None:
    """The reply's `tool_calls` (OpenAI shape) as ToolCalls; None when the server sent none,
    so the rule grader reads the reply's text (the text format) instead."""
    if not raw:
        return None
    from runner.generation.tool_calls import native_call

    calls = []
    for c in raw:
        fn = c.get("function") if isinstance(c, dict) else None
        if isinstance(fn, dict) and fn.get("name"):
            calls.append(native_call(fn["name"], fn.get("arguments") or "{}"))
    return tuple(calls) or None


def with_call_blocks(text: str, calls: tuple) -> str:
    """The reply as stored (`response`): its text, then each API tool call as a `<tool_call>` JSON
    block, so the judge and a reader see every act, not only the prose around it."""
    blocks = [json.dumps({"name": c.tool, "arguments": c.args}, ensure_ascii=False) for c in calls]
    return "\n".join([text.rstrip(), *(f"<tool_call>\n{b}\n</tool_call>" for b in blocks)]).strip()


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    chars = sum(len(m.get("content") or "") for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages) + 2


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()[:2000].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 -- the status alone still says what happened
        return e.reason if isinstance(e.reason, str) else ""
    try:
        obj = json.loads(raw)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        msg = err.get("message") if isinstance(err, dict) else None
        return str(msg or err)[:500]
    except ValueError:
        return " ".join(raw.split())[:500]


def _retry_after(value: str | None) -> float | None:
    try:
        return min(MAX_BACKOFF_SECONDS, max(0.0, float(value))) if value else None
    except ValueError:  # an HTTP date: not worth parsing, the backoff applies
        return None


def wait_for_server(base_url: str, timeout_s: float, api_key: str | None = None) -> float:
    """Block until `GET /v1/models` answers (a freshly started server), or raise ApiError."""
    t0 = time.monotonic()
    last = ""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    while time.monotonic() - t0 < timeout_s:
        try:
            req = urllib.request.Request(f"{base_url.rstrip('/')}/models", headers=headers)
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(0.5)
    raise ApiError(f"{base_url} did not answer within {timeout_s:.0f}s ({last})")


__all__ = ["ApiError", "ApiSpec", "OpenAIBackend", "api_tool_calls", "estimate_tokens", "read_api_key", "server_root",
           "wait_for_server"]
