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
    where, hint = sink.finish()
    assert hint == f"offline run(s): upload with `wandb sync {where}`"
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


def _results(tmp_path: Path) -> Path:
    """A small results dataset written by the project's ParquetSink (two checkpoints, one family)."""
    from tests.report.test_aggregate import row, write

    return write(tmp_path, [row(step, s, s < k, family="leaking") for step, k in ((100, 2), (200, 0)) for s in range(4)])


def test_own_run_logs_prefixed_keys_summaries_joinable_tables_and_artifacts(tmp_path, monkeypatch):
    import yaml

    from runner.sinks.metrics import checkpoint_metrics

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    results = _results(tmp_path)
    from runner.session import report_file

    sink = WandbSink(WandbConfig(mode=WandbMode.offline), results, "sweep-2", {"name": "demo", "sampling": {"seeds": 4}},
                     report_writer=report_file)
    assert sink.prefix == "eval/"
    for step, k in ((100, 2), (200, 0)):
        rows = [{"scenario": "leaking", "status": "ok", "harmful": s < k, "eval_awareness": None} for s in range(4)]
        metrics = {**checkpoint_metrics(rows), "overall/aware_tested/harmful_rate": float("nan")}
        tx = [{"item_id": f"i{step}-{s}", "checkpoint": f"checkpoint-{step}", "scenario": "leaking", "condition": "c",
               "seed": s, "status": "ok", "harmful": s < k, "eval_awareness": "neither", "evidence": "[]",
               "prompt_digest": "d" * 32, "response": "reply"} for s in range(2)]
        sink.log_checkpoint("demo-rl", step, metrics, tx)
    where, hint = sink.finish()
    assert "wandb sync" in hint and where in hint
    recs = _records(where)

    hist = [r["history"]["item"] for r in recs if r.get("type") == "history"]
    assert [h["eval/checkpoint_step"] for h in hist] == [100, 200]
    assert hist[0]["eval/leaking/harmful_rate"] == 0.5 and hist[1]["eval/overall/harmful_rate"] == 0
    keys = {k for h in hist for k in h if not k.startswith("_")}
    assert keys and all(k.startswith("eval/") for k in keys), keys
    assert "eval/overall/aware_tested/harmful_rate" not in keys        # NaN: left out, not a NaN panel

    metrics = {r["metric"]["name"]: r["metric"] for r in recs if r.get("type") == "metric"}
    rate = metrics["eval/overall/harmful_rate"]
    assert rate["step_metric"] == "eval/checkpoint_step" and rate["summary"] == {"min": True, "last": True}
    assert metrics["eval/overall/n"]["summary"] == {"last": True}
    summary = {}
    for r in recs:
        if r.get("type") == "summary":
            summary.update(r["summary"].get("update", {}))
    assert summary["eval/leaking/harmful_rate"] == {"min": 0, "last": 0}

    # The transcripts Tables of both checkpoints carry checkpoint, step, model, item_id, evidence
    # and prompt digest, so they join into one.
    tables = sorted(Path(where).glob("files/media/table/eval/transcripts_*.table.json"))
    assert len(tables) == 2
    joined = []
    for t in tables:
        table = json.loads(t.read_text())
        assert table["columns"][:4] == ["checkpoint", "step", "model", "item_id"]
        assert {"evidence", "prompt_digest"} <= set(table["columns"])
        joined += [dict(zip(table["columns"], r)) for r in table["data"]]
    assert sorted((r["step"], r["checkpoint"], r["model"]) for r in joined) == \
        [(100, "checkpoint-100", "demo-rl")] * 2 + [(200, "checkpoint-200", "demo-rl")] * 2

    # Artifacts: the Parquet files (small: copied), the resolved config, the report.
    arts = {r["artifact"]["name"]: r["artifact"] for r in recs if r.get("type") == "artifact"}
    files = {e["path"]: e for e in arts["results-sweep-2"]["manifest"]["contents"]}
    assert files and all(p.startswith("scenario=leaking/") and p.endswith(".parquet") for p in files)
    assert arts["results-sweep-2"]["type"] == "results"
    (cfg_entry,) = arts["config-sweep-2"]["manifest"]["contents"]
    assert cfg_entry["path"] == "config.yaml"
    assert yaml.safe_load(Path(cfg_entry["local_path"]).read_text()) == {"name": "demo", "sampling": {"seeds": 4}}
    (report,) = arts["report-sweep-2"]["manifest"]["contents"]
    assert report["path"] == "report.html" and "Alignment persistence" in Path(report["local_path"]).read_text()


def test_large_results_are_logged_as_a_reference(tmp_path, monkeypatch):
    import runner.sinks.wandb_sink as sink_module

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(sink_module, "RESULTS_COPY_LIMIT", 1)
    results = _results(tmp_path)
    sink = WandbSink(WandbConfig(mode=WandbMode.offline, log_artifacts=True), results, "sweep-3", {})
    sink.log_checkpoint("m", 100, _metrics(1, 4))
    where, _ = sink.finish()
    arts = {r["artifact"]["name"]: r["artifact"] for r in _records(where) if r.get("type") == "artifact"}
    entries = arts["results-sweep-3"]["manifest"]["contents"]
    assert entries and all(e["ref"].startswith(results.resolve().as_uri()) for e in entries), entries


def test_run_summary_holds_the_prompt_token_figures(tmp_path):
    cfg = WandbConfig(mode=WandbMode.offline, dir=str(tmp_path / "wb"))
    sink = WandbSink(cfg, tmp_path, "sweep-2", {"name": "demo"})
    sink.log_checkpoint("m", 100, _metrics(1, 10))
    sink.run_summary({"prompt_tokens_sent": 800, "prompt_tokens_computed": 100, "prompt_computed_fraction": 0.125})
    where = sink.finish()[0]
    summary = {}
    for r in _records(where):
        if r.get("type") == "summary":
            summary.update(r["summary"].get("update", {}))
    assert summary["eval/prompt_tokens_computed"] == 100      # under the run's key prefix
    assert summary["eval/prompt_computed_fraction"] == 0.125
