"""`runner submit / jobs / stop`: a sweep (or a watch) as a Ray job, through Ray's Job Submission API.

    runner submit conf/sweep.yaml output.dir=/shared/evals/run1 --address http://HEAD:8265 --follow
    runner jobs                  # this tool's jobs on the cluster, with their state
    runner stop JOB_ID           # SIGTERM to the driver: finished batches stay; re-submit resumes

The config is loaded and validated here first (bad input: exit 2, nothing submitted); the
resolved config travels inside the job's entrypoint. The code is the `runner` package installed
on the nodes (with Ray, vLLM and torch), not a working_dir upload: see README "Clusters" for why.

No secret travels with the job: runtime_env env_vars are stored in Ray's job table (the
dashboard, `ray job list` and every worker's RAY_JOB_CONFIG_JSON show them), so WANDB_API_KEY
and API keys must be in the environment `ray start` ran in on the nodes.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from runner.builtins import is_builtin
from runner.config import SweepConfig, config_to_yaml
from runner.errors import UserError
from runner.plan import BUILTIN_SCENARIOS, check_where
from runner.scenarios import load_packs

TOOL = "misalign-runner"
# Keys that must never reach the job's metadata or runtime_env (see the module docstring).
SECRET_ENV = ("WANDB_API_KEY",)
EXIT_STOPPED = 143


@dataclass
class Submission:
    entrypoint: str
    metadata: dict[str, str]
    submission_id: str


def dashboard_address(cli_address: str | None, cfg: SweepConfig | None = None) -> str:
    """The Job API address: --address, else ray.address when it is an http(s) URL, else RAY_ADDRESS."""
    import os

    address = cli_address or (cfg.ray.address if cfg and cfg.ray.address and "://" in cfg.ray.address else None) \
        or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UserError("no Ray cluster to submit to: give --address http://HEAD:8265 (the head node's dashboard), "
                        "ray.address=http://HEAD:8265 or set RAY_ADDRESS")
    if "://" not in address:
        raise UserError(f"Ray job address '{address}' is not a dashboard URL: give http://HEAD:8265 "
                        f"(the head's dashboard port, not the GCS port 6379)")
    return address


def connect(address: str):
    """A JobSubmissionClient; an unreachable or non-Ray address is bad input (exit 2)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001 -- refused, unreachable, not Ray, token missing: one line each
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot reach Ray's job server at {address}: {first}") from None


def _absolute_or_uri(key: str, value: str) -> list[str]:
    if is_builtin(value) or "://" in value or value.startswith("~") or Path(value).is_absolute():
        return []
    return [f"{key} must be an absolute path (or a URI) as the cluster's nodes see it, not '{value}': "
            f"the job runs in a temporary working directory on the head node"]


def prepare_submission(cfg: SweepConfig, command: str, run_dir: str | None = None) -> Submission:
    """Validate what can be checked here and build the entrypoint that carries the resolved config."""
    import base64
    import shlex

    problems = _absolute_or_uri("output.dir", cfg.output.dir)
    for i, m in enumerate(cfg.models):
        problems += _absolute_or_uri(f"models[{i}].path", m.path)
    for i, d in enumerate(cfg.scenarios.dirs):
        problems += _absolute_or_uri(f"scenarios.dirs[{i}]", d)
    if run_dir is not None:
        problems += _absolute_or_uri("--watch RUN_DIR", run_dir)
    if problems:
        raise UserError("runner submit: " + "; ".join(problems))
    # Packs that are readable here (the shipped ones; a shared filesystem) are checked now; the
    # job checks the rest, and the checkpoints, on the head node before any engine starts.
    local = ([BUILTIN_SCENARIOS] if cfg.scenarios.builtin else []) + \
        [Path(d).expanduser() for d in cfg.scenarios.dirs if Path(d).expanduser().is_dir()]
    if local:
        packs = load_packs(local, cfg.scenarios.families or None)
        if len(local) - int(cfg.scenarios.builtin) == len(cfg.scenarios.dirs):
            check_where(packs, cfg.scenarios.where)
    # The driver reaches Ray through the RAY_ADDRESS the job supervisor sets for it.
    job_cfg = replace(cfg, ray=replace(cfg.ray, address=None))
    blob = base64.b64encode(config_to_yaml(job_cfg).encode()).decode()
    args = ["watch", run_dir, '"$cfg"'] if run_dir else ["sweep", '"$cfg"']
    quoted = " ".join(a if a == '"$cfg"' else shlex.quote(a) for a in args)
    # The resolved config rides in the entrypoint (it holds no secrets by construction) and is
    # written to a file on the head node; `exec` makes the runner the process `ray job stop`
    # signals. `python` is the interpreter on the head's PATH where `ray start` ran.
    entrypoint = (f"cfg=$(mktemp -t runner-job-XXXXXX.yaml) && echo {blob} | base64 -d > \"$cfg\" && "
                  f"exec python -m runner.cli {quoted}")
    submission_id = f"runner-{_slug(cfg.name)}-{uuid.uuid4().hex[:8]}"
    metadata = {"tool": TOOL, "command": command, "name": cfg.name, "output_dir": cfg.output.dir,
                **({"run_dir": run_dir} if run_dir else {})}
    return Submission(entrypoint, metadata, submission_id)


def submit(client, sub: Submission) -> str:
    try:
        return client.submit_job(entrypoint=sub.entrypoint, submission_id=sub.submission_id, metadata=sub.metadata)
    except RuntimeError as e:
        raise UserError(f"the cluster refused the job: {str(e).strip().splitlines()[0]}") from None


def follow(client, job_id: str, out=None) -> int:
    """Stream the job's logs until it ends; the job's outcome as an exit status."""
    out = out or sys.stdout

    async def tail():
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError as e:  # the log stream closed early (e.g. dashboard restart): the status still decides
        print(f"runner: log stream ended: {str(e).splitlines()[0] if str(e) else e}", file=sys.stderr)
    return wait_exit_code(client, job_id)


def wait_exit_code(client, job_id: str, poll: float = 1.0) -> int:
    import time

    from ray.job_submission import JobStatus

    while True:
        info = client.get_job_info(job_id)
        if info.status.is_terminal():
            break
        time.sleep(poll)
    if info.status == JobStatus.SUCCEEDED:
        return 0
    if info.status == JobStatus.STOPPED:
        return EXIT_STOPPED
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and code > 0 else 1


def list_jobs(client) -> list:
    """This tool's jobs (by their metadata), oldest first."""
    jobs = [j for j in client.list_jobs() if (j.metadata or {}).get("tool") == TOOL]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def format_job(j) -> str:
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(j.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M") if j.start_time else "-"
    md = j.metadata or {}
    what = md.get("command", "?") + (f" {md['run_dir']}" if md.get("run_dir") else "")
    return f"{j.submission_id}  {j.status.value:<9}  {when}  {what} -> {md.get('output_dir', '?')}"


def stop(client, job_id: str) -> bool:
    ids = {j.submission_id for j in list_jobs(client)}
    if job_id not in ids:
        raise UserError(f"no job {job_id} of this tool on the cluster (see `runner jobs`)")
    return client.stop_job(job_id)


def secret_notes() -> list[str]:
    import os

    return [f"note: {k} is set here but is not sent with the job (Ray stores a job's env_vars in its job table); "
            f"the nodes read it from the environment `ray start` ran in" for k in SECRET_ENV if os.environ.get(k)]


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "sweep"
