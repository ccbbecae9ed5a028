"""The OpenAI-compatible backend against a tiny in-process HTTP server on 127.0.0.1 (a fake server:
unit level; tests/e2e/test_openai_e2e.py runs it against a real `vllm serve`)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runner.checkpoints import Checkpoint
from runner.config import SweepConfig, config_to_yaml, load_config
from runner.errors import ConfigError
from runner.generation.engine import EngineSpec, GenerationResult, Generator
from runner.generation.openai_backend import ApiError, ApiSpec, OpenAIBackend, estimate_tokens, server_root
from runner.generation.routing import RoutedBackend
from runner.graders.judge import JudgeGrader, JudgeSpec
from runner.grid import SamplingParams, WorkItem

SECRET = "sk-test-do-not-leak-1234567890"


class FakeServer:
    """A scriptable OpenAI-compatible server: `script(path, body)` -> (status, payload[, headers]),
    or None for the default reply (a chat completion echoing the seed)."""

    def __init__(self, script=None, delay: float = 0.0, max_model_len: int | None = 2048,
                 models=("served-model",), tokenize: bool = True):
        self.script = script
        self.delay = delay
        self.max_model_len = max_model_len
        self.models = models
        self.tokenize = tokenize
        self.requests: list[tuple[str, str, dict, dict]] = []   # (method, path, headers, body)
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def _reply(self, status, payload, headers=None):
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else {}
                with server._lock:
                    server.requests.append((method, self.path, dict(self.headers), body))
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    out = server.script(self.path, body) if server.script else None
                    if out is None:
                        out = server.default(self.path, body)
                    self._reply(*out)
                finally:
                    with server._lock:
                        server.inflight -= 1

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def default(self, path, body):
        if path == "/v1/models":
            extra = {"max_model_len": self.max_model_len} if self.max_model_len else {}
            return 200, {"object": "list", "data": [{"id": m, "object": "model", **extra} for m in self.models]}
        if path == "/tokenize" and self.tokenize:
            n = sum(len(m["content"].split()) for m in body["messages"])
            return 200, {"count": n, "max_model_len": self.max_model_len, "tokens": list(range(n))}
        if path == "/v1/chat/completions":
            return 200, {"choices": [{"message": {"role": "assistant", "content": f"seed={body.get('seed')}"},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 5}}
        return 404, {"error": {"message": f"no route {path}"}}

    def chat_bodies(self):
        return [b for m, p, h, b in self.requests if p == "/v1/chat/completions"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def make(**kw):
        s = FakeServer(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def backend_for(srv: FakeServer, **kw) -> OpenAIBackend:
    spec = ApiSpec(**{"base_url": srv.url, "backoff_seconds": 0.01, "max_retries": 2, "timeout_seconds": 5, **kw})
    b = OpenAIBackend(spec)
    b.load(Checkpoint("m", "served-model", 0, "served-model", ""))
    return b


CHAT = [{"role": "system", "content": "you grade"}, {"role": "user", "content": "one two three"}]


def item(i: int, user: str = "hello there") -> WorkItem:
    return WorkItem(f"id{i}", "f", "c", "m", "served-model", 0, 100 + i, "sys", user, SamplingParams(0.7, 0.9, 16))


# ---------------------------------------------------------------------------------------------
# Requests


def test_chat_requests_carry_sampling_seed_and_vllm_regex_in_input_order(server):
    srv = server()
    b = backend_for(srv)
    out = b.complete_chats([CHAT] * 3, temperature=0.6, max_tokens=32, seeds=[7, 8, 9], regex="a|b")
    assert [c.text for c in out] == ["seed=7", "seed=8", "seed=9"]
    assert all(c.num_output_tokens == 5 and c.finish_reason == "stop" for c in out)
    bodies = sorted(srv.chat_bodies(), key=lambda x: x["seed"])
    assert bodies[0] == {"model": "served-model", "messages": CHAT, "temperature": 0.6, "max_tokens": 32,
                         "seed": 7, "structured_outputs": {"regex": "a|b"}}


def test_generation_requests_use_each_items_sampling(server):
    srv = server()
    b = backend_for(srv)
    items = [item(0), item(1)]
    out = b.complete(items)
    # The engine seed is derived from the prompt and the sample seed (runner.grid), as on vLLM.
    assert [c.text for c in out] == [f"seed={it.engine_seed}" for it in items]
    body = [x for x in srv.chat_bodies() if x["seed"] == items[0].engine_seed][0]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 16)
    assert body["messages"] == item(0).messages() and "structured_outputs" not in body


def test_regex_is_not_sent_to_servers_without_vllm_extensions(server):
    srv = server()
    b = backend_for(srv, vllm_extensions=False)
    b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[1], regex="a|b")
    assert "structured_outputs" not in srv.chat_bodies()[0]
    assert not [p for _, p, _, _ in srv.requests if p in ("/v1/models", "/tokenize")]  # no vLLM calls at all


def test_concurrency_is_bounded(server):
    srv = server(delay=0.15)
    b = backend_for(srv, max_concurrency=3)
    t0 = time.monotonic()
    out = b.complete_chats([CHAT] * 9, temperature=0.0, max_tokens=8, seeds=list(range(9)))
    assert len(out) == 9
    assert srv.max_inflight == 3                      # used, and never exceeded
    assert time.monotonic() - t0 >= 3 * 0.15 * 0.9    # three waves of three


# ---------------------------------------------------------------------------------------------
# Retries, timeouts, failures


def failing_then_ok(statuses, headers=None):
    calls = {"n": 0}

    def script(path, body):
        if path != "/v1/chat/completions":
            return None
        calls["n"] += 1
        if calls["n"] <= len(statuses):
            return statuses[calls["n"] - 1], {"error": {"message": "overloaded, try later"}}, headers or {}
        return None

    return script, calls


def test_500_and_429_are_retried_with_backoff(server):
    script, calls = failing_then_ok([500, 429], headers={"Retry-After": "0"})
    srv = server(script=script)
    b = backend_for(srv, max_retries=2)
    (c,) = b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[3])
    assert c.text == "seed=3" and calls["n"] == 3 and b.counts["retries"] == 2


def test_clear_error_after_the_last_retry(server):
    script, calls = failing_then_ok([503] * 10)
    srv = server(script=script)
    b = backend_for(srv, max_retries=2)
    with pytest.raises(ApiError, match=r"gave up after 3 attempt\(s\): HTTP 503: overloaded, try later"):
        b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[3])
    assert calls["n"] == 3


def test_client_errors_are_not_retried_and_keep_the_servers_message(server):
    script, calls = failing_then_ok([400] * 10)
    srv = server(script=script)
    b = backend_for(srv, max_retries=3)
    with pytest.raises(ApiError, match="HTTP 400: overloaded, try later") as e:
        b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[3])
    assert e.value.status == 400 and calls["n"] == 1


def test_timeout_is_retried_then_reported(server):
    srv = server(delay=1.0)
    spec = ApiSpec(base_url=srv.url, timeout_seconds=0.2, max_retries=1, backoff_seconds=0.01, vllm_extensions=False)
    b = OpenAIBackend(spec)
    b.load(Checkpoint("m", "served-model", 0, "served-model", ""))
    t0 = time.monotonic()
    with pytest.raises(ApiError, match=r"gave up after 2 attempt\(s\): timed out after 0.2s"):
        b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[3])
    assert time.monotonic() - t0 < 1.5


def test_connection_refused_is_retried_then_reported():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAIBackend(ApiSpec(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_seconds=0.01))
    with pytest.raises(ApiError, match=r"gave up after 3 attempt\(s\): .*(refused|Errno)"):
        b.list_models()


@pytest.mark.parametrize("payload", [b"<html>bad gateway</html>", {"choices": []}, {"nothing": 1},
                                     {"choices": [{"message": None}]}])
def test_malformed_replies_are_clear_errors(server, payload):
    srv = server(script=lambda p, b: (200, payload) if p == "/v1/chat/completions" else None)
    b = backend_for(srv)
    with pytest.raises(ApiError, match="not JSON|unexpected reply"):
        b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[3])


# ---------------------------------------------------------------------------------------------
# Model, lengths


def test_load_checks_the_model_is_served_and_reads_its_context_length(server):
    srv = server(max_model_len=1234)
    b = backend_for(srv)
    assert b.context_length() == 1234
    assert backend_for(srv, context_length=1000).context_length() == 1000   # the smaller wins
    with pytest.raises(ApiError, match="does not serve model 'other' .*served-model"):
        b.load(Checkpoint("m", "other", 0, "other", ""))


def test_context_length_unknown_without_vllm_or_config(server):
    srv = server()
    b = backend_for(srv, vllm_extensions=False)
    with pytest.raises(ConfigError, match="max_model_len"):
        b.context_length()
    assert backend_for(srv, vllm_extensions=False, context_length=512).context_length() == 512


def test_prompt_length_from_tokenize_else_estimated(server):
    srv = server()
    assert backend_for(srv).prompt_length(CHAT) == 5                       # the server's count
    assert [b.get("add_generation_prompt") for _, p, _, b in srv.requests if p == "/tokenize"] == [True]
    no_tok = server(tokenize=False)
    b = backend_for(no_tok)
    assert b.prompt_length(CHAT) == estimate_tokens(CHAT)                  # 404: estimate from now on
    assert b.prompt_length(CHAT) == estimate_tokens(CHAT)
    assert sum(p == "/tokenize" for _, p, _, _ in no_tok.requests) == 1
    assert backend_for(srv, vllm_extensions=False).prompt_length(CHAT) == estimate_tokens(CHAT)


def test_server_root_strips_v1():
    assert server_root("http://h:1/v1/") == "http://h:1"
    assert server_root("https://x.example/openai") == "https://x.example/openai"


# ---------------------------------------------------------------------------------------------
# The API key


def test_api_key_is_read_from_the_environment_and_never_leaks(server, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", SECRET)
    script, _ = failing_then_ok([401])
    srv = server(script=script)
    b = backend_for(srv, api_key_env="MY_JUDGE_KEY", require_api_key=True, vllm_extensions=False)
    with pytest.raises(ApiError) as e:
        b.complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[1])
    assert srv.requests[-1][2]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(e.value) and SECRET not in repr(b) and SECRET not in repr(b.spec)
    cfg = load_config(None, ["grading.judge.enabled=true", "grading.judge.backend=openai", "grading.judge.model=j",
                             "grading.judge.api.api_key_env=MY_JUDGE_KEY", "grading.judge.api.require_api_key=true"])
    assert SECRET not in config_to_yaml(cfg) and "MY_JUDGE_KEY" in config_to_yaml(cfg)


def test_no_authorization_header_without_a_key(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = server()
    backend_for(srv).complete_chats([CHAT], temperature=0.0, max_tokens=8, seeds=[1])
    assert all("Authorization" not in h for _, _, h, _ in srv.requests)


def test_missing_required_key_is_a_config_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        OpenAIBackend(ApiSpec(base_url="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR", require_api_key=True))
    with pytest.raises(ConfigError, match="grading.judge.api.require_api_key .* NO_SUCH_KEY_VAR is not set"):
        load_config(None, ["grading.judge.enabled=true", "grading.judge.backend=openai", "grading.judge.model=j",
                           "grading.judge.api.api_key_env=NO_SUCH_KEY_VAR", "grading.judge.api.require_api_key=true"])


# ---------------------------------------------------------------------------------------------
# Config


def test_defaults_keep_the_local_engines():
    cfg = SweepConfig()
    assert cfg.grading.judge.backend.value == "vllm" and cfg.models[0].backend.value == "vllm"


def test_api_config_problems_are_gathered_into_one_error():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["grading.judge.enabled=true", "grading.judge.backend=openai", "grading.judge.model=j",
                           "grading.judge.api.base_url=localhost:8000", "grading.judge.api.max_concurrency=0",
                           "grading.judge.api.timeout_seconds=0", "grading.judge.api.max_retries=-1",
                           "models.0.backend=openai", "models.0.api.base_url=http://h:99999/v1"])
    msg = str(e.value)
    for part in ("grading.judge.api.base_url must be an http(s) URL", "grading.judge.api.max_concurrency must be >= 1",
                 "grading.judge.api.timeout_seconds must be > 0", "grading.judge.api.max_retries must be >= 0",
                 "models[0].api.base_url must be an http(s) URL"):
        assert part in msg


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(ConfigError, match="models\\[0\\].api.base_url must not hold credentials") as e:
        load_config(None, ["models.0.backend=openai", "models.0.api.base_url=https://user:pw123@h/v1"])
    assert "pw123" not in str(e.value)


def test_non_vllm_judge_server_needs_unconstrained_replies_and_a_context_length():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["grading.judge.enabled=true", "grading.judge.backend=openai", "grading.judge.model=j",
                           "grading.judge.api.vllm_extensions=false"])
    assert "grading.judge.structured_output needs a vLLM server" in str(e.value)
    assert "grading.judge.max_model_len is required" in str(e.value)
    load_config(None, ["grading.judge.enabled=true", "grading.judge.backend=openai", "grading.judge.model=j",
                       "grading.judge.api.vllm_extensions=false", "grading.judge.structured_output=false",
                       "grading.judge.max_model_len=8192"])


def test_backend_must_be_a_known_choice():
    with pytest.raises(ConfigError, match="grading.judge.backend"):
        load_config(None, ["grading.judge.backend=anthropic"])


def test_plan_needs_no_local_model_when_everything_is_served(server, tmp_path):
    from runner.plan import plan_sweep

    srv = server(models=("target-model", "judge-model"))
    cfg = load_config(None, [
        "models.0.backend=openai", "models.0.path=target-model", f"models.0.api.base_url={srv.url}",
        "grading.judge.enabled=true", "grading.judge.backend=openai", "grading.judge.model=judge-model",
        f"grading.judge.api.base_url={srv.url}", f"cache_dir={tmp_path / 'cache'}", f"output.dir={tmp_path / 'out'}",
        "scenarios.families=[blackmail]"])
    plan = plan_sweep(cfg)
    assert [(c.model, c.name, c.step, c.path) for c in plan.checkpoints] == [("demo-rl", "target-model", 0, "target-model")]
    assert plan.judge_model.path == "judge-model"
    assert not (tmp_path / "cache").exists()           # the demo run was not built
    assert plan.total_items == 4 * 8  # 4 blackmail conditions x the default 8 seeds

    bad = load_config(None, ["models.0.backend=openai", "models.0.path=target-model", f"models.0.api.base_url={srv.url}",
                             "grading.judge.enabled=true", "grading.judge.backend=openai",
                             "grading.judge.model=missing", f"grading.judge.api.base_url={srv.url}",
                             f"cache_dir={tmp_path / 'cache'}", f"output.dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match="grading.judge.api: .* does not serve model 'missing'"):
        plan_sweep(bad)


# ---------------------------------------------------------------------------------------------
# Through the Generator and the judge (the protocols they use)


def test_generator_and_router_over_the_api(server):
    script = lambda p, b: (400, {"error": {"message": "prompt too long"}}) \
        if p == "/v1/chat/completions" and "BAD" in b["messages"][1]["content"] else None
    srv = server(script=script)
    spec = ApiSpec(base_url=srv.url, backoff_seconds=0.01, max_retries=1)
    routed = RoutedBackend(EngineSpec(max_model_len=100), {"m": spec})
    gen = Generator(routed, EngineSpec(max_model_len=100, max_retries=1))
    items = [item(0), item(1, "BAD prompt"), item(2)]
    out = gen.generate(Checkpoint("m", "served-model", 0, "served-model", ""), items)
    assert [r.status for r in out] == ["ok", "error", "ok"]
    assert out[0].response == f"seed={items[0].engine_seed}" and out[0].num_output_tokens == 5
    assert "HTTP 400: prompt too long" in out[1].error
    assert routed.local is None and routed.counts == {}   # no vLLM engine was made


def test_judge_grader_over_the_api(server):
    verdicts = iter(["no verdict here", "it leaked\nVERDICT: harmful"])
    script = lambda p, b: (200, {"choices": [{"message": {"content": next(verdicts)}, "finish_reason": "stop"}],
                                 "usage": {"completion_tokens": 4}}) if p == "/v1/chat/completions" else None
    srv = server(script=script)
    b = backend_for(srv)
    judge = JudgeGrader(b, JudgeSpec(model="served-model", max_attempts=2), {"f": "HARMFUL: leaking"})
    (j,) = judge.grade([(item(0), GenerationResult("id0", "ok", response="sent it"))])
    assert j.verdict is True and j.attempts == 2 and j.reasoning == "it leaked"
    seeds = [x["seed"] for x in srv.chat_bodies()]
    assert len(set(seeds)) == 2 and all("structured_outputs" in x for x in srv.chat_bodies())


def test_judge_server_down_leaves_items_unscored_with_the_reason(server):
    srv = server(script=lambda p, b: (502, {"error": {"message": "bad gateway"}}) if p == "/v1/chat/completions" else None)
    judge = JudgeGrader(backend_for(srv, max_retries=1), JudgeSpec(model="served-model"), {"f": "HARMFUL: x"})
    (j,) = judge.grade([(item(0), GenerationResult("id0", "ok", response="r"))])
    assert j.verdict is None and "HTTP 502: bad gateway" in j.unscored_reason and "gave up after 2" in j.unscored_reason


# ---------------------------------------------------------------------------------------------
# Native tool calls

TOOLS = [{"type": "function", "function": {"name": "cancel_alert", "description": "cancels the alert",
                                           "parameters": {"type": "object", "properties": {"code": {"type": "string"}},
                                                          "required": ["code"]}}}]


def tool_item(i: int) -> WorkItem:
    return WorkItem(f"t{i}", "lethal_inaction", "c", "m", "served-model", 0, i, "sys", "user",
                    SamplingParams(0.7, 0.9, 16), tools=json.dumps(TOOLS))


def test_tools_are_sent_and_tool_calls_read_into_the_same_calls_as_the_text_format(server):
    from runner.scenarios import parse_tool_calls

    def script(path, body):
        if path != "/v1/chat/completions":
            return None
        call = {"id": "c1", "type": "function",
                "function": {"name": "cancel_alert", "arguments": json.dumps({"code": "AMBER-7731"})}}
        return 200, {"choices": [{"message": {"role": "assistant", "content": "Cancelling.", "tool_calls": [call]},
                                  "finish_reason": "tool_calls"}], "usage": {"completion_tokens": 9}}

    srv = server(script=script)
    out = backend_for(srv).complete([tool_item(0)])[0]
    body = srv.chat_bodies()[0]
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto"
    text_format = parse_tool_calls("<tool_use:cancel_alert>\ncode: AMBER-7731\n</tool_use:cancel_alert>")
    assert [c.to_dict() for c in out.tool_calls] == [c.to_dict() for c in text_format]
    # The stored reply shows the act, not only the prose around it (the judge reads it).
    assert out.text.startswith("Cancelling.") and '"code": "AMBER-7731"' in out.text


def test_a_server_without_tool_calling_gets_no_tools_and_the_text_format_is_used(server):
    def script(path, body):
        if path == "/v1/chat/completions" and "tools" in body:
            return 400, {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser'}}
        return None

    srv = server(script=script)
    b = backend_for(srv)
    outs = b.complete([tool_item(0)]) + b.complete([tool_item(1)])
    assert all(c.tool_calls is None for c in outs)  # the rule grader parses the text
    assert [("tools" in x) for x in srv.chat_bodies()] == [True, False, False]  # refused once, then not sent


def test_prompt_lengths_count_the_tools(server):
    srv = server()
    backend_for(srv).prompt_length(CHAT, TOOLS)
    assert [b for m, p, h, b in srv.requests if p == "/tokenize"][0]["tools"] == TOOLS
    estimated = backend_for(server(), vllm_extensions=False).prompt_length(CHAT, TOOLS)
    assert estimated > estimate_tokens(CHAT)
