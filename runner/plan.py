"""Everything a command needs before it runs, resolved once: paths, scenario packs, models and
their checkpoints, the judge, the grid's size, servers checked. Nothing here starts Ray or an
engine, or writes to the results directory.

    plan = plan_sweep(cfg)                # runner sweep / watch / submit (--dry-run prints it)
    plan = plan_regrade(cfg)              # runner grade: the stored replies still to grade
    judge = resolve_judge(cfg, paths)     # runner judge-eval, and both of the above
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from runner.builtins import ensure_builtins, is_builtin, model_dir
from runner.checkpoints import Checkpoint
from runner.checkpoints.layouts import layout_problem
from runner.config import REPO_ROOT, ModelConfig, SweepConfig
from runner.errors import ConfigError, ScenarioError, UserError
from runner.generation.backends import BACKENDS
from runner.generation.engine import GenerationResult
from runner.graders.reasons import is_transient
from runner.graders.version import grading_version
from runner.grid import (
    SEED_SCHEME,
    SamplingParams,
    WorkItem,
    count_items,
    expand_grid,
    grid_item_ids,
    make_item_id,
    prompt_digest,
)
from runner.rows import GENERATION_COLUMNS, stored_result
from runner.scenarios import load_packs
from runner.sinks.parquet import PARTITION_COLUMN, latest_rows, read_results

BUILTIN_SCENARIOS = REPO_ROOT / "scenarios"
PACK_CHANGED = "scenario pack changed since generation"


@dataclass(frozen=True)
class Paths:
    """The config's local paths, expanded and made absolute once (`~`, relative to the cwd)."""

    output_dir: Path
    cache_dir: Path
    pack_dirs: list[str]


def resolve_paths(cfg: SweepConfig) -> Paths:
    dirs = [str(BUILTIN_SCENARIOS)] if cfg.scenarios.builtin else []
    dirs += [str(Path(d).expanduser().resolve()) for d in cfg.scenarios.dirs]
    if not dirs:
        raise ConfigError("config error: no scenario packs: scenarios.builtin is false and scenarios.dirs is empty")
    return Paths(output_dir=Path(cfg.output.dir).expanduser().resolve(),
                 cache_dir=Path(cfg.cache_dir).expanduser().resolve(), pack_dirs=dirs)


def check_where(packs, where: dict[str, list[str]]) -> None:
    """Every `scenarios.where` variable and value exists in the loaded packs."""
    problems = []
    for var, values in where.items():
        owners = [p for p in packs if var in p.variables]
        if not owners:
            known = sorted({v for p in packs for v in p.variable_names})
            problems.append(f"scenarios.where: unknown variable '{var}' (variables: {', '.join(known)})")
            continue
        allowed = sorted({v for p in owners for v in p.variables[var]})
        for v in values:
            if v not in allowed:
                problems.append(f"scenarios.where.{var}: unknown value '{v}' (allowed: {', '.join(allowed)})")
    if problems:
        raise ConfigError("config error: " + "; ".join(problems))


def resolve_builtin(value: str | None, paths: Paths, one_model: bool = False) -> str | None:
    """A builtin model name (`builtin:demo-rl`, `builtin:smollm2-135m-instruct`) as the directory
    it stands for, built into cache_dir on first use; any other value unchanged. `one_model`:
    where one model is wanted (a judge, a LoRA base), not a run of checkpoints."""
    if not is_builtin(value):
        return value
    built = ensure_builtins([value], paths.cache_dir)
    return str(model_dir(value, built) if one_model else built[value])


def check_layouts(cfg: SweepConfig) -> None:
    """Every `models[i].checkpoint_layout` names a layout the runner reads, or is a pattern. (Here,
    not among the config's own checks: the layouts live in runner.checkpoints, which reads config.)"""
    problems = [f"models[{i}].checkpoint_layout: {why}" for i, m in enumerate(cfg.models)
                if (why := layout_problem(m.checkpoint_layout))]
    if problems:
        raise ConfigError("config error: " + "; ".join(problems))


def resolve_model(m: ModelConfig, paths: Paths) -> ModelConfig:
    """A model with its builtin names resolved (API-served models are left as they are)."""
    if not BACKENDS[m.backend].serves_locally:
        return m
    return dataclasses.replace(m, path=resolve_builtin(m.path, paths),
                               base_model=resolve_builtin(m.base_model, paths, one_model=True))


def resolve_judge(cfg: SweepConfig, paths: Paths) -> Checkpoint | None:
    """The judge model as a Checkpoint its actors load (`builtin:demo-rl`: the demo run's
    checkpoint-100), its server checked when one serves it; None when no judge is enabled."""
    j = cfg.grading.judge
    if not j.enabled:
        return None
    backend = BACKENDS[j.backend]
    model = backend.judge_model(resolve_builtin(j.model, paths, one_model=True) if backend.serves_locally else j.model)
    backend.preflight("grading.judge.api", j.api, model)
    return model


@dataclass
class SweepPlan:
    """Everything validated and resolved, before any engine starts or anything is written."""

    cfg: SweepConfig
    paths: Paths
    families: list[str]
    checkpoints: list[Checkpoint]
    total_items: int
    packs: list = field(default_factory=list)
    # (family, condition id) -> RenderedScenario, filled lazily and shared by every grid expansion.
    rendered: dict = field(default_factory=dict)
    judge_model: Checkpoint | None = None      # None: no judge
    limit: int | None = None                   # --limit N: the first N items of the grid, in grid order

    @property
    def pack_dirs(self) -> list[str]:
        return self.paths.pack_dirs

    def _quota(self, checkpoints: list[Checkpoint]) -> list[int]:
        """Items per checkpoint, in grid order (checkpoint-major), within `limit`."""
        left = self.limit
        out = []
        for c in checkpoints:
            n = count_items(self.packs, self.cfg.scenarios.where, [c], self.cfg.sampling.seeds)
            if left is not None:
                n, left = min(n, left), max(0, left - n)
            out.append(n)
        return out

    def grid(self, checkpoints: list[Checkpoint]) -> list[tuple[Checkpoint, object]]:
        """(checkpoint, its WorkItems lazily) per checkpoint, within `limit`."""
        return [(c, itertools.islice(expand_grid(self.packs, self.cfg.scenarios.where, [c], self.cfg.sampling,
                                                 self.rendered), n))
                for c, n in zip(checkpoints, self._quota(checkpoints))]

    def grid_ids(self, checkpoints: list[Checkpoint] | None = None):
        """The item ids of the grid (of `checkpoints`, default all), lazily, in grid order."""
        checkpoints = self.checkpoints if checkpoints is None else checkpoints
        return itertools.chain.from_iterable(
            itertools.islice(grid_item_ids(self.packs, self.cfg.scenarios.where, [c], self.cfg.sampling,
                                           self.rendered), n)
            for c, n in zip(checkpoints, self._quota(checkpoints)))

    def count(self, checkpoints: list[Checkpoint]) -> int:
        return sum(self._quota(checkpoints))

    @property
    def n_conditions(self) -> int:
        """Conditions of the selected packs (per checkpoint and seed; --limit left out)."""
        return count_items(self.packs, self.cfg.scenarios.where, self.checkpoints[:1] or [None], 1)


def plan_sweep(cfg: SweepConfig, allow_no_checkpoints: bool = False, limit: int | None = None) -> SweepPlan:
    """Load packs, build (or find) checkpoints, size the grid, resolve the judge. Writes nothing
    to output.dir. `allow_no_checkpoints`: `watch` plans before the run holds any checkpoint.
    `limit`: only the first N items of the grid (a smoke test), the same N on every run."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1 (got {limit})")
    paths = resolve_paths(cfg)
    check_layouts(cfg)
    packs = load_packs([Path(d) for d in paths.pack_dirs], cfg.scenarios.families or None)
    check_where(packs, cfg.scenarios.where)
    checkpoints: list[Checkpoint] = []
    for m in cfg.models:
        backend = BACKENDS[m.backend]
        found = backend.checkpoints(resolve_model(m, paths))
        for c in found:
            backend.preflight(f"models '{m.name}'.api", m.api, c)
        checkpoints += found
    total = count_items(packs, cfg.scenarios.where, checkpoints, cfg.sampling.seeds)
    if total == 0 and not (allow_no_checkpoints and not checkpoints):
        raise ConfigError("config error: the grid is empty: scenarios.where selects no condition")
    judge_model = resolve_judge(cfg, paths)
    plan = SweepPlan(cfg, paths, [p.name for p in packs], checkpoints, total, packs=packs, judge_model=judge_model,
                     limit=limit)
    plan.total_items = plan.count(checkpoints)
    return plan


# ---------------------------------------------------------------------------------------------
# Re-grading stored replies


@dataclass
class RegradePlan:
    """Everything read and checked, before Ray starts or anything is written."""

    cfg: SweepConfig
    paths: Paths
    families: list[str]
    packs: list
    grading_version: str
    todo: list[tuple[WorkItem, GenerationResult, dict]]   # (rebuilt item, its reply, the generation row)
    unbuildable: list[tuple[dict, str]]                   # (generation row, why it cannot be rebuilt)
    already: int                                          # items with a final row of this grading version
    ok_items: int                                         # items with an `ok` generation row, in the selected families
    judge_model: Checkpoint | None = None

    @property
    def results_dir(self) -> Path:
        return self.paths.output_dir

    @property
    def pack_dirs(self) -> list[str]:
        return self.paths.pack_dirs


def read_stored(root: Path, cols: list[str] | None = None, filter=None):
    """The dataset's generation and grading-version columns; a dataset that does not read is bad input."""
    import pyarrow as pa

    cols = cols or [*GENERATION_COLUMNS, "created_at", "grading_version", "unscored_reason", "tool_calls"]
    try:
        return read_results(root, columns=cols, filter=filter)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"not a results dataset: {root} does not read as one ({str(e).splitlines()[0][:300]})") from None


def final_item_ids(table, version: str) -> set[str]:
    """Items with an `ok` row of this grading that is final (graded, or unscored for a reason of
    the design): re-grades skip them; rows unscored by a failure (transient) do not count."""
    import pyarrow.compute as pc

    rows = table.filter(pc.and_(pc.fill_null(pc.equal(table["grading_version"], version), False),
                                pc.fill_null(pc.equal(table["status"], "ok"), False)))
    return {i for i, why in zip(rows["item_id"].to_pylist(), rows["unscored_reason"].to_pylist())
            if not is_transient(why)}


def newest_ok_rows(table) -> list[dict]:
    """One `ok` generation row per item_id (the newest: every `ok` row of an item has the same reply)."""
    import pyarrow.compute as pc

    ok = table.filter(pc.equal(table["status"], "ok"))
    rows = latest_rows(ok).to_pylist()
    # Null-safe: a row missing its step or seed is reported by rebuild_item, not a sort crash.
    rows.sort(key=lambda r: tuple((r[k] is None, r[k] if r[k] is not None else 0) for k in (
        "model", "checkpoint_step", "checkpoint", "scenario", "condition", "seed")))
    return rows


def stored_todo(rows: list[dict], packs: dict, skip: set[str], rendered: dict):
    """(todo, unbuildable) for stored `ok` rows not in `skip`: each rebuilt into its WorkItem."""
    todo, unbuildable = [], []
    for row in rows:
        if row["item_id"] in skip:
            continue
        item, why = rebuild_item(row, packs, rendered)
        if item is None:
            unbuildable.append((row, why))
        else:
            todo.append((item, stored_result(row), row))
    return todo, unbuildable


def plan_regrade(cfg: SweepConfig) -> RegradePlan:
    """Read RESULTS_DIR (= output.dir), load the packs, resolve the judge, rebuild every item still to grade."""
    import pyarrow.compute as pc

    paths = resolve_paths(cfg)
    table = read_stored(paths.output_dir)  # first: a dataset that does not read stops everything
    packs = load_packs([Path(d) for d in paths.pack_dirs], cfg.scenarios.families or None)
    by_name = {p.name: p for p in packs}
    version = grading_version(cfg.grading, packs)
    judge_model = resolve_judge(cfg, paths)
    if cfg.scenarios.families:
        table = table.filter(pc.is_in(table[PARTITION_COLUMN], value_set=pa_strings(cfg.scenarios.families)))
    unknown = sorted(set(table[PARTITION_COLUMN].to_pylist()) - set(by_name))
    if unknown:  # a config mistake (the sweep's scenarios.dirs not given), not a changed pack
        raise ConfigError(f"config error: {paths.output_dir} holds families with no loaded scenario pack: "
                          f"{', '.join(unknown)}; add their packs with scenarios.dirs=[...] (as the sweep had), "
                          f"or re-grade the others with scenarios.families=[{', '.join(sorted(set(by_name)))}]")
    graded = final_item_ids(table, version)
    generated = newest_ok_rows(table)
    todo, unbuildable = stored_todo(generated, by_name, graded, {})
    return RegradePlan(cfg, paths, [p.name for p in packs], packs, version, todo, unbuildable,
                       already=len({r["item_id"] for r in generated} & graded), ok_items=len(generated),
                       judge_model=judge_model)


def rebuild_item(row: dict, packs: dict, rendered: dict) -> tuple[WorkItem | None, str | None]:
    """The row's WorkItem, re-rendered from the packs; (None, why) when its item_id cannot be reproduced."""
    family, condition = row["scenario"], row["condition"]
    pack = packs.get(family)
    if pack is None:
        return None, f"{PACK_CHANGED}: no loaded scenario pack is named '{family}' (scenarios.builtin, scenarios.dirs)"
    key = (family, condition)
    if key not in rendered:
        try:
            rendered[key] = pack.render(pack.condition_from_id(condition))
        except ScenarioError as e:
            rendered[key] = e.problems[0]
    sc = rendered[key]
    if isinstance(sc, str):
        return None, f"{PACK_CHANGED}: {sc}"
    if None in (row["temperature"], row["top_p"], row["max_tokens"], row["checkpoint_step"], row["seed"]):
        return None, "the generation row lacks its sampling parameters, step or seed: its item_id cannot be checked"
    sampling = SamplingParams(row["temperature"], row["top_p"], row["max_tokens"])
    if row.get("prompt_digest"):
        # Rows that record their prompt's digest are checked on it alone: their item_id may hold
        # what the row does not store (a LoRA checkpoint's base model).
        same = prompt_digest(sc.system, sc.user) == row["prompt_digest"]
    else:  # older rows: rebuild the item_id, under the current seed scheme or the one before it
        ckpt = Checkpoint(model=row["model"], name=row["checkpoint"], step=row["checkpoint_step"], path="", tokenizer="")
        same = row["item_id"] in {make_item_id(sc.system, sc.user, sampling, ckpt, row["seed"], seed_scheme=s)
                                  for s in (SEED_SCHEME, 1)}
    if not same:
        return None, (f"{PACK_CHANGED}: re-rendering {family} condition '{condition}' gives another prompt "
                      f"than the row's reply was generated from; the reply is not graded against it")
    return WorkItem(item_id=row["item_id"], scenario=family, condition=condition, model=row["model"],
                    checkpoint=row["checkpoint"], checkpoint_step=row["checkpoint_step"], seed=row["seed"],
                    system=sc.system, user=sc.user, sampling=sampling), None


def load_regrade_config(results_dir: str, config: str | None, overrides: list[str]) -> SweepConfig:
    """The config for re-grading RESULTS_DIR; `output.dir` is RESULTS_DIR itself."""
    from runner.config import load_config

    root = Path(results_dir).expanduser()
    if not root.exists():
        raise UserError(f"results directory not found: {results_dir}")
    if not root.is_dir():
        raise UserError(f"not a results directory: {results_dir} is a file")
    if not any(root.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
        raise UserError(f"not a results dataset: {results_dir} holds no {PARTITION_COLUMN}=*/*.parquet files "
                        f"(give the output.dir of a sweep)")
    for o in overrides:
        if o.split("=", 1)[0].strip() == "output.dir":
            raise ConfigError("config error: output.dir cannot be set for `runner grade`: rows are added to "
                              "RESULTS_DIR itself")
    return load_config(config, [*overrides, f"output.dir={root.resolve()}"])


# ---------------------------------------------------------------------------------------------
# What is left to do in output.dir


@dataclass
class Progress:
    """Where a sweep's grid stands in output.dir: items done, and those whose grading failed."""

    done: set[str]                  # item ids with an `ok` row (generated)
    regrade: list[tuple[WorkItem, GenerationResult, dict]] = field(default_factory=list)
    unbuildable: list[tuple[dict, str]] = field(default_factory=list)


def sweep_progress(plan: SweepPlan) -> Progress:
    """Items of the grid already generated, and among them those whose newest grading failed
    (a grader or judge died): those are graded again from the stored reply, not regenerated."""
    import pyarrow.dataset as ds

    out_dir = plan.paths.output_dir
    # The small columns of every row first: replies are read only for the items to grade again.
    light = read_stored(out_dir, ["item_id", "status", "unscored_reason", "grading_version", "created_at"])
    ok = light.filter(_ok(light))
    done = set(ok["item_id"].to_pylist())
    if not done:
        return Progress(done)
    version = grading_version(plan.cfg.grading, plan.packs)
    transient = {r["item_id"] for r in latest_rows(ok, prefer=version).to_pylist() if is_transient(r["unscored_reason"])}
    if not transient:
        return Progress(done)
    grid = set(plan.grid_ids()) & transient
    table = read_stored(out_dir, filter=ds.field("item_id").isin(pa_strings(grid)))
    rows = newest_ok_rows(table)
    todo, unbuildable = stored_todo(rows, {p.name: p for p in plan.packs}, set(), plan.rendered)
    return Progress(done, todo, unbuildable)


def nothing_left(plan: SweepPlan, progress: Progress | None = None) -> bool:
    """Every item of the grid has an `ok` row and none waits to be graded again."""
    progress = progress or sweep_progress(plan)
    if progress.regrade or progress.unbuildable or not progress.done:
        return False
    return all(i in progress.done for i in plan.grid_ids())


def _ok(table):
    import pyarrow.compute as pc

    return pc.fill_null(pc.equal(table["status"], "ok"), False)


def pa_strings(values):
    """Values as a sorted pyarrow string array (for `is_in` filters)."""
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


__all__ = ["BUILTIN_SCENARIOS", "PACK_CHANGED", "Paths", "Progress", "RegradePlan", "SweepPlan", "check_where",
           "resolve_builtin", "resolve_model",
           "load_regrade_config", "nothing_left", "plan_regrade", "plan_sweep", "rebuild_item", "resolve_judge",
           "resolve_paths", "sweep_progress"]
