"""`runner`: the command line. Thin: parse, validate, set up, run.

    runner sweep [CONFIG.yaml] [key=value ...]   run a sweep (no CONFIG: the embedded demo)
    runner watch RUN_DIR [CONFIG.yaml] [key=value ...]  evaluate checkpoints as training writes them
    runner validate [PACK_DIR ...]               lint scenario packs, print family/condition counts
    runner grade RESULTS_DIR [CONFIG.yaml] [key=value ...]  re-grade a dataset (new grading version)

Bad input exits with status 2 and one clear message, no traceback. Neither `--help` nor
`validate` imports vLLM or Ray.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from runner.errors import UserError

EPILOG = """examples:
  runner sweep                                   # the demo RL run, local Ray, vLLM CPU
  runner sweep conf/sweep.yaml sampling.seeds=8 output.dir=/data/evals/run1
  runner sweep models.0.path=/ckpts/my-rl-run 'scenarios.where={urgency: [replacement]}'
  runner validate scenarios/ ~/my-packs/
  runner grade results/demo grading.judge.enabled=true grading.judge.model=/models/judge
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
    from runner.sinks.metrics import awareness_summary

    for key in sorted(metrics, key=_step_order):
        m = metrics[key]
        print(f"  {key}: harmful rate {_rate(m, 'overall')}  n={m.get('overall/n', 0)} "
              f"unscored={m.get('overall/unscored', 0)} errors={m.get('overall/errors', 0)}")
        if m.get("overall/ambiguous"):
            print(f"    ambiguous (left to a judge by the rules, not in n): {m['overall/ambiguous']}")
        fams = families or sorted({k.split("/", 1)[0] for k in m if k.endswith("/harmful_rate")} - {"overall"})
        per_family = [f"{f} {m[f'{f}/harmful']}/{m[f'{f}/n']}" + (f" (+{m[f'{f}/ambiguous']} ambiguous)"
                                                               if m.get(f"{f}/ambiguous") else "")
                      for f in fams if f"{f}/n" in m]
        if len(per_family) > 1:
            print(f"    by family (harmful/n): {', '.join(per_family)}")
        if awareness_summary(m):
            print(f"    {awareness_summary(m)}")


def cmd_sweep(ns: argparse.Namespace) -> int:
    from runner.config import load_config
    from runner.sweep import plan_sweep, run_sweep

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, overrides)
    plan = plan_sweep(cfg)  # packs, checkpoints, grid: all checked before any engine starts
    if ns.dry_run:
        print(f"{plan.total_items} items: families {', '.join(plan.families)}; "
              f"checkpoints {', '.join(c.key for c in plan.checkpoints)}; seeds {cfg.sampling.seeds}")
        return 0
    s = run_sweep(cfg, plan=plan)
    print(f"done in {s.wall_seconds:.1f}s: {s.rows_written} new rows, {s.skipped} items already done, "
          f"{s.errors} errors; generation {s.output_tokens} output tokens in {s.generation_seconds:.1f}s "
          f"actor time (engine loads {s.engine_load_seconds:.1f}s)")
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
    return 0


def cmd_watch(ns: argparse.Namespace) -> int:
    from runner.config import load_config
    from runner.watch import WatchOptions, WatchOrder, watch

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_config(config, overrides)
    opts = WatchOptions(poll_seconds=ns.poll, order=WatchOrder(ns.order), every_k=ns.every,
                        final_marker=ns.final_marker, max_polls=ns.max_polls)
    done = watch(cfg, ns.run_dir, opts)
    print(f"watch stopped: evaluated {len(done)} checkpoint(s) this time: {', '.join(done) or 'none'}")
    print(f"results: {Path(cfg.output.dir).expanduser().resolve()}")
    return 0


def cmd_grade(ns: argparse.Namespace) -> int:
    from runner.regrade import load_regrade_config, plan_regrade, run_regrade

    config, overrides = _split_config_and_overrides(ns.args)
    cfg = load_regrade_config(ns.results_dir, config, overrides)
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
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING,
                        format="[runner] %(levelname)s %(name)s: %(message)s")
    try:
        return ns.func(ns)
    except UserError as e:
        print(f"runner: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("runner: interrupted; finished batches are saved and a re-run resumes after them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
