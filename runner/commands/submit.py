"""`runner submit` / `runner jobs` / `runner stop`: a sweep or watcher as a Ray job on a cluster
(the Ray Jobs client and the entrypoint are in `runner.jobs`)."""

from __future__ import annotations

import sys

from runner import jobs
from runner.config import load_config


def submit_command(config: str | None, overrides: list[str], *, address: str | None, watch_dir: str | None,
                   follow: bool) -> int:
    cfg = load_config(config, overrides)  # bad input stops here: nothing is submitted
    sub = jobs.prepare_submission(cfg, "watch" if watch_dir else "sweep", watch_dir)
    client = jobs.connect(jobs.dashboard_address(address, cfg))
    job_id = jobs.submit(client, sub)
    for note in jobs.secret_notes():
        print(f"runner: {note}", file=sys.stderr)
    print(f"submitted job {job_id}: {sub.metadata['command']} -> {cfg.output.dir}")
    if not follow:
        print(f"follow it: runner submit ... --follow, or `ray job logs -f {job_id} --address {client.get_address()}`; "
              f"stop it: runner stop {job_id}")
        return 0
    code = jobs.follow(client, job_id)
    print(f"job {job_id}: {client.get_job_status(job_id).value} (exit {code})", file=sys.stderr)
    return code


def jobs_command(address: str | None) -> int:
    client = jobs.connect(jobs.dashboard_address(address))
    found = jobs.list_jobs(client)
    for j in found:
        print(jobs.format_job(j))
    if not found:
        print("no jobs of this tool on the cluster")
    return 0


def stop_command(job_id: str, address: str | None) -> int:
    client = jobs.connect(jobs.dashboard_address(address))
    stopped = jobs.stop(client, job_id)
    print(f"job {job_id}: {'stop requested (SIGTERM; finished batches are kept)' if stopped else 'already finished'}")
    return 0


__all__ = ["jobs_command", "stop_command", "submit_command"]
