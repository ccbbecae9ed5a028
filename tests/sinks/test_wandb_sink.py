"""The W&B sink against real wandb in offline mode (no network), read back with `wandb leet inspect`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runner.config import WandbConfig, WandbMode
from runner.sinks.wandb_sink import WandbSink, resolve_mode
from runner.stats import two_proportion_pvalue


def _records(run_dir: str) -> list[dict]:
    exe = Path(sys.executable).parent / "wandb"
    out = subprocess.run([str(exe), "leet", "inspect", "--json", run_dir], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _metrics(k, n):
    return {"overall/harmful": k, "overall/n": n, "overall/harmful_rate": k / n}


def test_mode_follows_the_environment(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode(WandbConfig()) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(WandbConfig()) == "online"
    assert resolve_mode(WandbConfig(mode=WandbMode.disabled)) == "disabled"


def test_two_proportion_test():
    assert two_proportion_pvalue(2, 50, 20, 50) < 0.001
    assert two_proportion_pvalue(20, 50, 2, 50) > 0.99      # a falling rate is no regression
    assert 0.3 < two_proportion_pvalue(10, 50, 12, 50) < 0.5
    assert two_proportion_pvalue(0, 10, 0, 10) == 1.0


def test_attach_to_existing_run_prefixes_keys_and_never_writes_the_key(tmp_path, monkeypatch):
    secret = "k" * 40
    monkeypatch.setenv("WANDB_API_KEY", secret)
    cfg = WandbConfig(mode=WandbMode.offline, attach_run_id="rltrain01", dir=str(tmp_path / "wb"))
    sink = WandbSink(cfg, tmp_path, "sweep-1", {"name": "demo"})
    sink.log_checkpoint("m", 100, _metrics(1, 10), transcripts=[{"scenario": "blackmail", "response": "hi"}])
    sink.log_checkpoint("m", 200, _metrics(2, 10))
    (where,) = sink.finish()
    recs = _records(where)
    run = next(r["run"] for r in recs if r.get("type") == "run")
    assert run["run_id"] == "rltrain01"
    hist = [r["history"]["item"] for r in recs if r.get("type") == "history"]
    assert [h["eval/checkpoint_step"] for h in hist] == [100, 200]
    assert hist[0]["eval/overall/harmful_rate"] == 0.1
    assert hist[0]["eval/transcripts._type"] == "table-file" and hist[0]["eval/transcripts.nrows"] == 1
    for f in Path(tmp_path).rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_run_summary_holds_the_prompt_token_figures(tmp_path):
    cfg = WandbConfig(mode=WandbMode.offline, dir=str(tmp_path / "wb"))
    sink = WandbSink(cfg, tmp_path, "sweep-2", {"name": "demo"})
    sink.log_checkpoint("m", 100, _metrics(1, 10))
    sink.run_summary({"prompt_tokens_sent": 800, "prompt_tokens_computed": 100, "prompt_computed_fraction": 0.125})
    (where,) = sink.finish()
    summary = {}
    for r in _records(where):
        if r.get("type") == "summary":
            summary.update(r["summary"].get("update", {}))
    assert summary["prompt_tokens_computed"] == 100
    assert summary["prompt_computed_fraction"] == 0.125
