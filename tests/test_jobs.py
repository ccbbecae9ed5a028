"""`runner submit` before anything reaches a cluster: what the job carries (fast, no Ray)."""

from __future__ import annotations

import base64
import os
import re
import subprocess

import pytest

from runner import jobs
from runner.config import load_config
from runner.errors import UserError


def _cfg(tmp_path, *extra):
    return load_config(None, [f"output.dir={tmp_path / 'out'}", "models.0.path=/shared/run", "sampling.seeds=3",
                              "ray.address=http://head:8265", *extra])


def _shipped_yaml(entrypoint: str) -> str:
    blob = re.search(r"echo (\S+) \| base64 -d", entrypoint).group(1)
    return base64.b64decode(blob).decode()


def test_the_entrypoint_carries_the_resolved_config_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "sk-test-secret-value")
    cfg = _cfg(tmp_path)
    sub = jobs.prepare_submission(cfg, "sweep")
    assert sub.entrypoint.endswith('exec python -m runner.cli sweep "$cfg"')
    (tmp_path / "job.yaml").write_text(_shipped_yaml(sub.entrypoint))
    shipped = load_config(tmp_path / "job.yaml")
    assert shipped.sampling.seeds == 3 and shipped.output.dir == str(tmp_path / "out")
    assert shipped.ray.address is None  # the job's driver uses the RAY_ADDRESS its supervisor sets
    everything = sub.entrypoint + _shipped_yaml(sub.entrypoint) + repr(sub.metadata)
    assert "sk-test-secret-value" not in everything
    assert sub.metadata["tool"] == jobs.TOOL and sub.metadata["command"] == "sweep"
    assert any("WANDB_API_KEY" in n for n in jobs.secret_notes())


def test_the_entrypoint_runs_in_a_shell(tmp_path):
    """The shell part writes the config file on the head; run it with `python` swapped for echo."""
    sub = jobs.prepare_submission(_cfg(tmp_path), "watch", "/shared/run")
    script = sub.entrypoint.replace("exec python -m runner.cli", "cat \"$cfg\" && echo ARGS")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    m = re.search(r"ARGS watch /shared/run (\S+runner-job-\w+\.yaml)$", out.strip())
    assert "seeds: 3" in out and m, out
    os.unlink(m.group(1))


@pytest.mark.parametrize("override, key", [
    ("output.dir=results/x", "output.dir"),
    ("models.0.path=ckpts/run", "models[0].path"),
    ("scenarios.dirs=[my-packs]", "scenarios.dirs[0]"),
])
def test_relative_paths_are_refused(tmp_path, override, key):
    with pytest.raises(UserError, match=re.escape(key) + " must be an absolute path"):
        jobs.prepare_submission(_cfg(tmp_path, override), "sweep")


def test_dashboard_address(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert jobs.dashboard_address("http://a:8265") == "http://a:8265"
    assert jobs.dashboard_address(None, _cfg(tmp_path)) == "http://head:8265"
    with pytest.raises(UserError, match="no Ray cluster to submit to"):
        jobs.dashboard_address(None, _cfg(tmp_path, "ray.address=auto"))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with pytest.raises(UserError, match="not a dashboard URL"):
        jobs.dashboard_address(None)


def test_submit_help_and_unreachable_cluster(tmp_path):
    """Through the real entry point: one line, exit 2, nothing submitted."""
    import sys

    p = subprocess.run([sys.executable, "-m", "runner.cli", "submit", "--address", "http://127.0.0.1:9",
                        f"output.dir={tmp_path / 'o'}", "models.0.path=/shared/run"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "cannot reach Ray's job server" in p.stderr
    h = subprocess.run([sys.executable, "-m", "runner.cli", "--help"], capture_output=True, text=True)
    assert all(c in h.stdout for c in ("submit", "jobs", "stop"))
