"""`runner`: evaluate RL checkpoints on agentic-misalignment scenarios (Ray + vLLM).

The command line: argument parsing only; each command is a function in `runner.commands`,
which this module calls with plain values.

    runner sweep [CONFIG.yaml] [key=value ...]   run a sweep (no CONFIG: the embedded demo)
    runner watch RUN_DIR [CONFIG.yaml] [key=value ...]  evaluate checkpoints as training writes them
    runner grade RESULTS_DIR [CONFIG.yaml] [key=value ...]  re-grade a dataset (new grading version)
    runner report RESULTS_DIR [RESULTS_DIR ...] [-o report.html] [--png DIR]  one self-contained HTML report
    runner checkpoints RUN_DIR [CONFIG.yaml] [key=value ...] [--json]  what sweep and watch would evaluate
    runner config [CONFIG.yaml] [key=value ...]  print the resolved config
    runner validate [PACK_DIR ...]               lint scenario packs, print family/condition counts
    runner judge-eval [CONFIG.yaml] [key=value ...]  measure a judge against the reference set
    runner submit [CONFIG.yaml] [key=value ...] [--watch RUN_DIR] [--follow]  as a Ray job on a cluster
    runner jobs / runner stop JOB_ID             this tool's Ray jobs; stop one

Exit status: 0 done; 1 the run itself failed or left error rows / failed gradings (a re-run
resumes them); 2 bad input, nothing started, one clear message and no traceback. Neither
`--help` nor `validate` imports vLLM or Ray.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from runner.errors import RunFailed, UserError

EPILOG = """examples:
  runner sweep                                   # the demo RL run, local Ray, vLLM CPU
  runner sweep conf/sweep.yaml sampling.seeds=8 output.dir=/data/evals/run1
  runner sweep models.0.path=/ckpts/my-rl-run 'scenarios.where={urgency: [replacement]}'
  runner validate scenarios/ ~/my-packs/
  runner grade results/demo grading.judge.enabled=true grading.judge.model=/models/judge
  runner submit conf/cluster-gpu.yaml models.0.path=/data/rl-run output.dir=/data/evals/rl-run \\
      --address http://HEAD:8265 --follow
  runner report results/demo                     # writes results/demo/_report.html
"""

REPORT_EPILOG = """Reads each dataset's newest `ok` grading per item (as the sweep's metrics do) and writes one HTML
file that opens without network: persistence curves with Wilson 95% bands, condition x checkpoint
heatmaps, paired comparisons against a baseline checkpoint (exact McNemar), eval awareness,
judge vs rules, errors and unscored rows with their reasons, and a transcript browser.
Default output: RESULTS_DIR/_report.html for one dataset (the leading underscore keeps dataset
readers from taking it for data), ./report.html for several.

examples:
  runner report results/demo
  runner report results/run-a results/run-b -o compare.html --png figures/
  runner report results/demo --baseline 200 --transcripts 5000
"""

GRADE_EPILOG = """Adds one row per item under a new grading version (a hash of the grading settings, packs'
checks and rubrics, and the eval-awareness classifier); earlier rows stay as they were. Only
items with an `ok` reply are graded; no generation engine starts. An item whose prompt can no
longer be rebuilt from the packs (the pack changed since generation) gets an unscored row with
the reason. Re-running resumes: items already graded with this version are skipped.

examples:
  runner grade results/demo                                  # rules + eval awareness, current packs
  runner grade results/demo grading.judge.enabled=true grading.judge.model=/models/judge
  runner grade results/demo conf/sweep.yaml grading.judge.enabled=true \\
      grading.judge.model=builtin:demo-rl grading.judge.combine=judge_only wandb.mode=disabled
"""


def _split_config_and_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    config, overrides = None, []
    for a in args:
        if "=" in a:
            overrides.append(a)
        elif not a.endswith((".yaml", ".yml")) and not Path(a).is_file():
            raise UserError(f"bad override '{a}': expected key=value, e.g. sampling.seeds=8 "
                            f"(or a CONFIG.yaml file)")
        elif config is None:
            config = a
        else:
            raise UserError(f"unexpected argument '{a}': give at most one CONFIG.yaml, then key=value overrides")
    return config, overrides




SWEEP_EPILOG = """Runs every item of the grid (scenario pack x condition x checkpoint x seed) that has no `ok` row in
output.dir yet, and grades again the items whose grading failed; prints the harmful rate per
checkpoint, the results directory and the W&B run. Exit status 1 when error rows or failed
gradings are left (a re-run resumes exactly those).

examples:
  runner sweep                                   # the demo RL run, local Ray, vLLM CPU
  runner sweep --limit 20                        # a smoke test: the first 20 items of the grid
  runner sweep --dry-run models.0.path=/ckpts/my-run   # size the grid: new vs already done
  runner sweep conf/sweep.yaml sampling.seeds=16 output.dir=results/more-seeds
  runner sweep models.0.path=/ckpts/my-run 'scenarios.where={urgency: [replacement]}'
"""

WATCH_EPILOG = """Polls RUN_DIR (models[0] is the trained model; other models are evaluated from their own paths)
and evaluates each checkpoint once it is complete by its trainer's rule, exactly once across
restarts. Stops on Ctrl-C/SIGTERM, or when --final-marker appears and all is evaluated.

examples:
  runner watch /ckpts/my-rl-run output.dir=/data/evals/my-rl-run
  runner watch s3://bucket/run --every 200 --order latest   # steps 200, 400, ...; newest first
"""

CHECKPOINTS_EPILOG = """One line per checkpoint: name, step, model dir, kind (full | adapter), base model, ready or why not.
Exit 0 when the listing worked (even if nothing is ready), 2 when RUN_DIR is not a run.

examples:
  runner checkpoints /ckpts/my-rl-run
  runner checkpoints s3://bucket/run --json
"""

CONFIG_EPILOG = """examples:
  runner config                                  # the embedded default
  runner config conf/cluster-gpu.yaml sampling.seeds=32 > resolved.yaml
"""

JOB_EPILOG = """examples:
  runner submit conf/cluster-gpu.yaml models.0.path=/data/rl-run output.dir=/data/evals/rl-run \\
      --address http://HEAD:8265 --follow
  runner submit conf/cluster-gpu.yaml --watch /data/rl-run output.dir=/data/evals/rl-run
  runner jobs --address http://HEAD:8265
  runner stop runner-demo-1a2b3c4d --address http://HEAD:8265
"""

JUDGE_EVAL_EPILOG = """examples:
  runner judge-eval grading.judge.model=builtin:demo-rl
  runner judge-eval grading.judge.model=/models/judge --awareness
  runner judge-eval grading.judge.backend=openai grading.judge.model=my-judge grading.judge.api.base_url=http://host:8000/v1
"""

VALIDATE_EPILOG = """examples:
  runner validate                                # the shipped packs
  runner validate scenarios/ ~/my-packs/
"""


def cmd_sweep(ns) -> int:
    from runner.commands.sweep import sweep_command

    return sweep_command(*_split_config_and_overrides(ns.args), dry_run=ns.dry_run, limit=ns.limit)


def cmd_watch(ns) -> int:
    from runner.commands.watch import WatchOptions, WatchOrder, watch_command

    opts = WatchOptions(poll_seconds=ns.poll, order=WatchOrder(ns.order), every_steps=ns.every,
                        final_marker=ns.final_marker, max_polls=ns.max_polls)
    return watch_command(ns.run_dir, *_split_config_and_overrides(ns.args), opts)


def cmd_grade(ns) -> int:
    from runner.commands.grade import grade_command

    return grade_command(ns.results_dir, *_split_config_and_overrides(ns.args))


def cmd_report(ns) -> int:
    from runner.commands.report import report_command

    return report_command(ns.results_dirs, ns.output, ns.png, ns.baseline, ns.transcripts)


def cmd_checkpoints(ns) -> int:
    from runner.commands.checkpoints import checkpoints_command

    config, overrides = _split_config_and_overrides(ns.args)
    return checkpoints_command(ns.run_dir, config, overrides, ns.json, sys.stdout)


def cmd_config(ns) -> int:
    from runner.commands.validate import config_command

    return config_command(*_split_config_and_overrides(ns.args))


def cmd_validate(ns) -> int:
    from runner.commands.validate import validate_command

    return validate_command(ns.packs)


def cmd_judge_eval(ns) -> int:
    from runner.commands.judge_eval import run_judge_eval
    from runner.config import load_config

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, ["grading.judge.enabled=true", *overrides])
    run_judge_eval(cfg, Path(ns.reference), awareness=Path(ns.awareness_set) if ns.awareness else None)
    return 0


def cmd_submit(ns) -> int:
    from runner.commands.submit import submit_command

    return submit_command(*_split_config_and_overrides(ns.args), address=ns.address, watch_dir=ns.watch,
                          follow=ns.follow)


def cmd_jobs(ns) -> int:
    from runner.commands.submit import jobs_command

    return jobs_command(ns.address)


def cmd_stop(ns) -> int:
    from runner.commands.submit import stop_command

    return stop_command(ns.job_id, ns.address)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"runner (misalign-runner) {version('misalign-runner')}"
    except PackageNotFoundError:  # run from a checkout without installing
        return "runner (misalign-runner, not installed)"


def build_parser() -> argparse.ArgumentParser:
    # -v works before or after the subcommand: every subparser shares it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log at INFO level")
    p = argparse.ArgumentParser(prog="runner", description=__doc__.split("\n")[0], parents=[common],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str, epilog: str, func):
        c = sub.add_parser(name, help=help, description=description, epilog=epilog, parents=[common],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.set_defaults(func=func)
        return c

    config_args = dict(nargs="*", metavar="[CONFIG.yaml] [key=value]",
                       help="an optional YAML config, then OmegaConf dotlist overrides")
    s = command("sweep", "run a sweep (no CONFIG: the embedded demo)",
                "Run a sweep: every not-yet-done item of the grid through generation, graders and sinks.",
                SWEEP_EPILOG, cmd_sweep)
    s.add_argument("args", **config_args)
    s.add_argument("--dry-run", action="store_true",
                   help="validate and size the grid: new vs already done, output dir, W&B mode, engines; run nothing")
    s.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N items of the grid (deterministic: the same N every run)")
    w = command("watch", "evaluate each new checkpoint of a training run as it lands",
                "Evaluate each new complete checkpoint of RUN_DIR, exactly once.", WATCH_EPILOG, cmd_watch)
    w.add_argument("run_dir", help="the training run's checkpoint directory (or a URI: s3://, gs://, file://)")
    w.add_argument("args", **config_args)
    w.add_argument("--poll", type=float, default=30.0, help="seconds between scans (default 30)")
    w.add_argument("--order", choices=["step", "latest"], default="step",
                   help="step: oldest first (default); latest: newest first")
    w.add_argument("--every", type=int, default=1, metavar="STEPS",
                   help="only checkpoints whose step is a multiple of STEPS (default 1: all)")
    w.add_argument("--final-marker", default="TRAINING_DONE",
                   help="stop once this file exists in RUN_DIR and all is evaluated (default TRAINING_DONE)")
    w.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    g = command("grade", "re-grade an existing results dataset with other grading settings",
                "Re-grade RESULTS_DIR (a sweep's output.dir) without regenerating.", GRADE_EPILOG, cmd_grade)
    g.add_argument("results_dir", help="the results dataset (a sweep's output.dir); new rows are added to it")
    g.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]",
                   help="an optional YAML config, then overrides; grading.*, scenarios.* (packs, families), "
                        "ray.* and wandb.* apply")
    r = command("report", "write one self-contained HTML report of one or more results datasets",
                "Write one self-contained HTML report of RESULTS_DIR(s).", REPORT_EPILOG, cmd_report)
    r.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="a results dataset (a sweep's output.dir)")
    r.add_argument("-o", "--output", default=None,
                   help="the HTML file (default RESULTS_DIR/_report.html; ./report.html for several datasets)")
    r.add_argument("--png", default=None, metavar="DIR", help="also write every plot as a PNG (200 dpi) into DIR")
    r.add_argument("--baseline", type=int, default=None, metavar="STEP",
                   help="checkpoint_step to compare every checkpoint against (default: each series' first)")
    r.add_argument("--transcripts", type=int, default=2000, metavar="N",
                   help="transcripts embedded in the browser at most (default 2000)")
    k = command("checkpoints", "list the checkpoints of a run that sweep and watch would evaluate",
                "List RUN_DIR's checkpoints exactly as sweep and watch discover them.", CHECKPOINTS_EPILOG,
                cmd_checkpoints)
    k.add_argument("run_dir", help="a training run directory (or a URI), or one model directory")
    k.add_argument("args", **config_args)
    k.add_argument("--json", action="store_true", help="one JSON array of objects instead of lines")
    c = command("config", "print the resolved config (defaults filled in, validated)",
                "Print the config `runner sweep` would run with, as YAML.", CONFIG_EPILOG, cmd_config)
    c.add_argument("args", **config_args)
    j = command("judge-eval", "measure a judge (and the rules) against the hand-labelled reference set",
                "Judge every reply of the reference set with grading.judge.* and print accuracy, precision, "
                "recall and Cohen's kappa per family against the human labels.", JUDGE_EVAL_EPILOG, cmd_judge_eval)
    j.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]",
                   help="grading.judge.* picks the judge (model, backend, api); scenarios.* the packs")
    data = Path(__file__).resolve().parents[1] / "tests" / "data"
    j.add_argument("--reference", default=str(data / "reference_replies.yaml"),
                   help="the reference set (default: tests/data/reference_replies.yaml)")
    j.add_argument("--awareness", action="store_true",
                   help="also measure the eval-awareness classifiers (rules and judge) on the labelled scratchpads")
    j.add_argument("--awareness-set", default=str(data / "awareness_scratchpads.yaml"), help=argparse.SUPPRESS)
    v = command("validate", "lint scenario packs and print family/condition counts",
                "Load and check scenario packs; print their families and condition counts.", VALIDATE_EPILOG,
                cmd_validate)
    v.add_argument("packs", nargs="*", help="pack directories or directories of packs (default: shipped)")
    address = dict(default=None, help="the head node's dashboard, http://HEAD:8265 (default: ray.address or RAY_ADDRESS)")
    s = command("submit", "submit a sweep (or --watch) to a Ray cluster as a Ray job",
                "Validate the config here, then run `runner sweep` (or `runner watch`) as a Ray job on the "
                "cluster (the nodes run the runner package installed there).", JOB_EPILOG, cmd_submit)
    s.add_argument("args", **config_args)
    s.add_argument("--address", **address)
    s.add_argument("--watch", metavar="RUN_DIR", default=None, help="submit `runner watch RUN_DIR` instead of a sweep")
    s.add_argument("--follow", action="store_true", help="stream the job's logs; exit with the job's status")
    jb = command("jobs", "list this tool's Ray jobs with their state", "List this tool's Ray jobs.", JOB_EPILOG, cmd_jobs)
    jb.add_argument("--address", **address)
    t = command("stop", "stop a submitted job (a re-submit resumes it)",
                "Stop a submitted job (SIGTERM: finished batches are kept).", JOB_EPILOG, cmd_stop)
    t.add_argument("job_id")
    t.add_argument("--address", **address)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(ns, "verbose", False) else logging.WARNING,
                        format="[runner] %(levelname)s %(name)s: %(message)s")
    _sigterm_as_interrupt()
    try:
        return ns.func(ns)
    except UserError as e:
        print(f"runner: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"runner: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("runner: interrupted; finished batches are saved and a re-run resumes after them", file=sys.stderr)
        return 128 + (signal.SIGTERM if _TERMINATED else signal.SIGINT)


_TERMINATED: list[int] = []


def _sigterm_as_interrupt() -> None:
    """SIGTERM (`kill`, Slurm's time limit, `ray job stop`, Kubernetes) stops a run the way Ctrl-C
    does: KeyboardInterrupt unwinds the run, finished batches stay, actors and W&B are closed."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        _TERMINATED.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
