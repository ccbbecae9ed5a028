"""`runner`: the command line. Thin: parse, validate, set up, run.

    runner sweep [CONFIG.yaml] [key=value ...]   run a sweep (no CONFIG: the embedded demo)
    runner watch RUN_DIR [CONFIG.yaml] [key=value ...]  evaluate checkpoints as training writes them
    runner validate [PACK_DIR ...]               lint scenario packs, print family/condition counts
    runner grade RESULTS_DIR [CONFIG.yaml] [key=value ...]  re-grade a dataset (new grading version)
    runner report RESULTS_DIR [RESULTS_DIR ...] [-o report.html] [--png DIR]  one self-contained HTML report
    runner submit [CONFIG.yaml] [key=value ...] [--watch RUN_DIR] [--follow]  as a Ray job on a cluster
    runner jobs / runner stop JOB_ID             this tool's Ray jobs; stop one

Bad input exits with status 2 and one clear message, no traceback. Neither `--help` nor
`validate` imports vLLM or Ray.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from contextlib import contextmanager
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


def _step_order(key: str) -> tuple[str, int]:
    """`model@checkpoint-200` -> ("model", 200), so checkpoints print in training order."""
    model, _, name = key.partition("@")
    m = re.search(r"(\d+)$", name)
    return model, int(m.group(1)) if m else -1


def _rate(m: dict, group: str) -> str:
    rate = m.get(f"{group}/harmful_rate")
    if rate is None or rate != rate:
        return "n/a"
    return f"{rate:.3f} [{m[f'{group}/harmful_rate_lo']:.3f}, {m[f'{group}/harmful_rate_hi']:.3f}]"


def print_checkpoint_metrics(metrics: dict[str, dict], families: list[str] | None = None) -> None:
    """Per checkpoint, in step order: the overall rate with its interval and counts, the rate per
    family (a planted or real effect in one family is diluted in the overall rate), awareness."""
    from runner.sinks.metrics import CONTROL_GROUP, awareness_summary, engagement_summary

    for key in sorted(metrics, key=_step_order):
        m = metrics[key]
        print(f"  {key}: harmful rate {_rate(m, 'overall')}  n={m.get('overall/n', 0)} "
              f"unscored={m.get('overall/unscored', 0)} errors={m.get('overall/errors', 0)}")
        if m.get("overall/ambiguous"):
            print(f"    ambiguous (left to a judge by the rules, not in n): {m['overall/ambiguous']}")
        fams = families or sorted({k.split("/", 1)[0] for k in m if k.endswith("/harmful_rate")} - {"overall", CONTROL_GROUP})
        per_family = [f"{f} {m[f'{f}/harmful']}/{m[f'{f}/n']}" + (f" (+{m[f'{f}/ambiguous']} ambiguous)"
                                                               if m.get(f"{f}/ambiguous") else "")
                      for f in fams if f"{f}/n" in m]
        if len(per_family) > 1:
            print(f"    by family (harmful/n): {', '.join(per_family)}")
        if engagement_summary(m):
            print(f"    {engagement_summary(m)}")
        if awareness_summary(m):
            print(f"    {awareness_summary(m)}")


@contextmanager
def results_writer(out_dir: str, command: str):
    """Hold the one-writer lock on `out_dir` for the run (before Ray starts: a second run, an
    uncreatable directory or a foreign/corrupt Parquet file there fails at once, exit 2), after
    removing temporary files a killed run left."""
    from runner.sinks.lock import ResultsDirLock
    from runner.sinks.parquet import check_results_dataset, remove_stale_temporaries

    with ResultsDirLock(out_dir, command) as lock:
        stale = remove_stale_temporaries(lock.root)
        if stale:
            logging.getLogger("runner").warning("removed %d temporary file(s) left by a killed run in %s",
                                                stale, lock.root)
        check_results_dataset(lock.root)
        yield lock


def cmd_sweep(ns: argparse.Namespace) -> int:
    from runner.config import load_config
    from runner.sweep import plan_sweep, run_sweep

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, overrides)
    if ns.dry_run:
        plan = plan_sweep(cfg)
        print(f"{plan.total_items} items: families {', '.join(plan.families)}; "
              f"checkpoints {', '.join(c.key for c in plan.checkpoints)}; seeds {cfg.sampling.seeds}")
        return 0
    # The writer lock first: an output.dir that cannot be written, or that another run writes,
    # fails at once, before the demo run is built or any checkpoint is read.
    with results_writer(cfg.output.dir, "runner sweep"):
        plan = plan_sweep(cfg)  # packs, checkpoints, grid: all checked before any engine starts
        s = run_sweep(cfg, plan=plan)  # Ray starts only if work is left
    print(f"done in {s.wall_seconds:.1f}s: {s.rows_written} new rows, {s.skipped} items already done, "
          f"{s.errors} errors; generation {s.output_tokens} output tokens "
          f"({s.output_tokens / max(s.wall_seconds, 1e-9):.0f}/s over the run; engine loads {s.engine_load_seconds:.1f}s)")
    e = s.engine_loads
    if e:
        print(f"  engines: {e.get('fresh', 0)} fresh starts, {e.get('swap', 0) + e.get('swap_verified', 0)} "
              f"weight swaps ({e.get('swap_rejected', 0)} rejected by the equality check)"
              + (f", {e['adapter']} LoRA adapter switches" if e.get("adapter") else ""))
    if s.batch_failures or s.batch_fallbacks:
        print(f"  {s.batch_failures} batches lost an engine and were resubmitted; "
              f"{s.batch_fallbacks} engine batches failed and were redone item by item (see Ray logs)")
    print_checkpoint_metrics(s.metrics, plan.families)
    print(f"results: {s.results_dir}")
    for w in s.wandb:
        print(f"wandb: {w}")
    report_after_run(cfg.report.auto, Path(s.results_dir))
    return 0


def cmd_watch(ns: argparse.Namespace) -> int:
    from runner.config import load_config
    from runner.watch import WatchOptions, WatchOrder, watch

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, overrides)
    opts = WatchOptions(poll_seconds=ns.poll, order=WatchOrder(ns.order), every_k=ns.every,
                        final_marker=ns.final_marker, max_polls=ns.max_polls)
    with results_writer(cfg.output.dir, "runner watch"):
        done = watch(cfg, ns.run_dir, opts)
    print(f"watch stopped: evaluated {len(done)} checkpoint(s) this time: {', '.join(done) or 'none'}")
    print(f"results: {Path(cfg.output.dir).expanduser().resolve()}")
    report_after_run(cfg.report.auto, Path(cfg.output.dir).expanduser().resolve())
    return 0


def cmd_grade(ns: argparse.Namespace) -> int:
    from runner.regrade import load_regrade_config, plan_regrade, run_regrade

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_regrade_config(ns.results_dir, config, overrides)
    with results_writer(cfg.output.dir, "runner grade"):
        plan = plan_regrade(cfg)  # dataset, packs, judge model: all checked before Ray starts
        s = run_regrade(plan)
    if s.run_id is None:
        print(f"nothing to grade: all {s.skipped} items with an ok reply already have grading version "
              f"{s.grading_version}")
    else:
        print(f"done in {s.wall_seconds:.1f}s: run {s.run_id}, grading version {s.grading_version}: "
              f"{s.rows_written} new rows ({s.unbuildable} unscored: prompt no longer rebuilds), "
              f"{s.skipped} items already graded with this version")
    print_checkpoint_metrics(s.metrics)
    print(f"results: {s.results_dir} (rows with grading_version={s.grading_version})")
    for w in s.wandb:
        print(f"wandb: {w}")
    return 0


def report_after_run(auto: bool, results_dir: Path) -> None:
    """After a sweep or watch: write the report (report.auto) or say how to."""
    if not auto:
        print(f"report: run `runner report {results_dir}`")
        return
    from runner.report import default_output, write_report

    try:
        r = write_report([str(results_dir)], default_output([str(results_dir)]))
    except UserError as e:  # the run itself succeeded; a report that cannot be written does not undo it
        print(f"report: not written: {e}")
        return
    print(f"report: {r.path}")


def cmd_report(ns: argparse.Namespace) -> int:
    from runner.report import default_output, write_report

    out = ns.output or default_output(ns.results_dirs)
    r = write_report(ns.results_dirs, out, ns.png, baseline_step=ns.baseline, max_transcripts=ns.transcripts)
    print(f"report: {r.path} ({r.bytes / 1e6:.1f} MB, {r.rows} items, {r.transcripts} transcripts embedded, "
          f"{len(r.plots)} plots, {r.seconds:.1f}s)")
    if ns.png:
        print(f"png: {', '.join(r.plots)} in {Path(ns.png).expanduser().resolve()}")
    return 0


def cmd_submit(ns: argparse.Namespace) -> int:
    from runner import jobs
    from runner.config import load_config

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, overrides)  # bad input stops here: nothing is submitted
    sub = jobs.prepare_submission(cfg, "watch" if ns.watch else "sweep", ns.watch)
    client = jobs.connect(jobs.dashboard_address(ns.address, cfg))
    job_id = jobs.submit(client, sub)
    for note in jobs.secret_notes():
        print(f"runner: {note}", file=sys.stderr)
    print(f"submitted job {job_id}: {sub.metadata['command']} -> {cfg.output.dir}")
    if not ns.follow:
        print(f"follow it: runner submit ... --follow, or `ray job logs -f {job_id} --address {client.get_address()}`; "
              f"stop it: runner stop {job_id}")
        return 0
    code = jobs.follow(client, job_id)
    print(f"job {job_id}: {client.get_job_status(job_id).value} (exit {code})", file=sys.stderr)
    return code


def cmd_jobs(ns: argparse.Namespace) -> int:
    from runner import jobs

    client = jobs.connect(jobs.dashboard_address(ns.address))
    found = jobs.list_jobs(client)
    for j in found:
        print(jobs.format_job(j))
    if not found:
        print("no jobs of this tool on the cluster")
    return 0


def cmd_stop(ns: argparse.Namespace) -> int:
    from runner import jobs

    client = jobs.connect(jobs.dashboard_address(ns.address))
    stopped = jobs.stop(client, ns.job_id)
    print(f"job {ns.job_id}: {'stop requested (SIGTERM; finished batches are kept)' if stopped else 'already finished'}")
    return 0


def add_job_commands(sub) -> None:
    address = dict(default=None, help="the head node's dashboard, http://HEAD:8265 (default: ray.address or RAY_ADDRESS)")
    s = sub.add_parser("submit", help="submit a sweep (or --watch) to a Ray cluster as a Ray job",
                       description="Validate the config here, then run `runner sweep` (or `runner watch`) as a Ray "
                                   "job on the cluster (the nodes run the runner package installed there).")
    s.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]")
    s.add_argument("--address", **address)
    s.add_argument("--watch", metavar="RUN_DIR", default=None, help="submit `runner watch RUN_DIR` instead of a sweep")
    s.add_argument("--follow", action="store_true", help="stream the job's logs; exit with the job's status")
    s.set_defaults(func=cmd_submit)
    j = sub.add_parser("jobs", help="list this tool's Ray jobs with their state")
    j.add_argument("--address", **address)
    j.set_defaults(func=cmd_jobs)
    t = sub.add_parser("stop", help="stop a submitted job (a re-submit resumes it)")
    t.add_argument("job_id")
    t.add_argument("--address", **address)
    t.set_defaults(func=cmd_stop)


def cmd_judge_eval(ns: argparse.Namespace) -> int:
    from runner.bench.judge_eval import run_judge_eval
    from runner.config import load_config

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, ["grading.judge.enabled=true", *overrides])
    awareness = Path(ns.awareness_set) if ns.awareness else None
    run_judge_eval(cfg, Path(ns.reference), awareness=awareness)
    return 0


def cmd_validate(ns: argparse.Namespace) -> int:
    from runner.scenarios import load_packs
    from runner.scenarios.lint import summarize
    from runner.sweep import BUILTIN_SCENARIOS

    dirs = [Path(d) for d in ns.packs] or [BUILTIN_SCENARIOS]
    print(summarize(load_packs(dirs)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runner", description=__doc__.split("\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("sweep", help="run a sweep (no CONFIG: the embedded demo)")
    s.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]",
                   help="an optional YAML config, then OmegaConf dotlist overrides")
    s.add_argument("--dry-run", action="store_true", help="validate and size the grid, run nothing")
    s.set_defaults(func=cmd_sweep)
    w = sub.add_parser("watch", help="evaluate each new checkpoint of a training run as it lands")
    w.add_argument("run_dir", help="the training run's checkpoint directory")
    w.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]")
    w.add_argument("--poll", type=float, default=30.0, help="seconds between scans (default 30)")
    w.add_argument("--order", choices=["step", "latest"], default="step",
                   help="step: oldest first (default); latest: newest first")
    w.add_argument("--every", type=int, default=1, help="evaluate every k-th checkpoint (default 1)")
    w.add_argument("--final-marker", default="TRAINING_DONE",
                   help="stop once this file exists in RUN_DIR and all is evaluated (default TRAINING_DONE)")
    w.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    w.set_defaults(func=cmd_watch)
    g = sub.add_parser("grade", help="re-grade an existing results dataset with other grading settings",
                       description="Re-grade RESULTS_DIR (a sweep's output.dir) without regenerating.",
                       epilog=GRADE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("results_dir", help="the results dataset (a sweep's output.dir); new rows are added to it")
    g.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]",
                   help="an optional YAML config, then overrides; grading.*, scenarios.* (packs, families), "
                        "ray.* and wandb.* apply")
    g.set_defaults(func=cmd_grade)
    r = sub.add_parser("report", help="write one self-contained HTML report of one or more results datasets",
                       description="Write one self-contained HTML report of RESULTS_DIR(s).",
                       epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="a results dataset (a sweep's output.dir)")
    r.add_argument("-o", "--output", default=None,
                   help="the HTML file (default RESULTS_DIR/_report.html; ./report.html for several datasets)")
    r.add_argument("--png", default=None, metavar="DIR", help="also write every plot as a PNG (200 dpi) into DIR")
    r.add_argument("--baseline", type=int, default=None, metavar="STEP",
                   help="checkpoint_step to compare every checkpoint against (default: each series' first)")
    r.add_argument("--transcripts", type=int, default=2000, metavar="N",
                   help="transcripts embedded in the browser at most (default 2000)")
    r.set_defaults(func=cmd_report)
    j = sub.add_parser("judge-eval", help="measure a judge (and the rules) against the hand-labelled reference set",
                       description="Judge every reply of the reference set with grading.judge.* and print "
                                   "accuracy, precision, recall and Cohen's kappa per family against the human labels.")
    j.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value]",
                   help="grading.judge.* picks the judge (model, backend, api); scenarios.* the packs")
    j.add_argument("--reference", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" /
                                              "reference_replies.yaml"),
                   help="the reference set (default: tests/data/reference_replies.yaml)")
    j.add_argument("--awareness", action="store_true",
                   help="also measure the eval-awareness classifiers (rules and judge) on the labelled scratchpads")
    j.add_argument("--awareness-set", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" /
                                                  "awareness_scratchpads.yaml"), help=argparse.SUPPRESS)
    j.set_defaults(func=cmd_judge_eval)
    v = sub.add_parser("validate", help="lint scenario packs and print family/condition counts")
    v.add_argument("packs", nargs="*", help="pack directories or directories of packs (default: shipped)")
    v.set_defaults(func=cmd_validate)
    add_job_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING,
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
