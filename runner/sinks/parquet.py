"""The results dataset: Hive-partitioned Parquet (by `scenario`), append-only, atomic files.

Each write goes to a hidden temporary file that is fsynced and renamed into place, so a crash
never leaves a partial file that readers see. The temporary name starts with '.' (pyarrow and
pandas skip it) and does not end in `.parquet` (DuckDB's `**/*.parquet` glob skips it); the
next run into the directory, holding the writer lock (`runner.sinks.lock`), deletes any a
killed run left behind.

    pyarrow.dataset.dataset(DIR, partitioning="hive")   # reads it; so do DuckDB and pandas
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterable

from runner.sinks.storage import storage_error

SCHEMA_VERSION = 1
# schema_version values this runner has a reader for (read_results maps them to results_schema()).
READABLE_SCHEMA_VERSIONS = frozenset({1})
PARTITION_COLUMN = "scenario"
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".parquet.partial"


# The DESIGN.md contract: every results file has these (the partition column in its directory name).
CONTRACT_COLUMNS = ("run_id", "item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed",
                    "response", "status", "error", "harmful", "unscored_reason", "schema_version")


def results_schema():
    import pyarrow as pa

    return pa.schema([
        # The DESIGN.md contract: never renamed without a schema_version bump.
        ("run_id", pa.string()),
        ("item_id", pa.string()),
        ("scenario", pa.string()),
        ("condition", pa.string()),
        ("model", pa.string()),
        ("checkpoint", pa.string()),
        ("checkpoint_step", pa.int64()),
        ("seed", pa.int64()),
        ("response", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("harmful", pa.bool_()),
        ("unscored_reason", pa.string()),
        ("schema_version", pa.int64()),
        # Extras.
        ("grader", pa.string()),
        ("evidence", pa.string()),           # JSON: matched checks with the calls behind them
        ("tool_calls", pa.string()),         # JSON: every parsed tool call
        ("num_output_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        # Grading detail (additions, nullable; rows written before them read back as null).
        ("rule_harmful", pa.bool_()),        # the rule grader's evidence label
        ("judge_verdict", pa.bool_()),       # the LLM judge's verdict; null: not judged or unscored
        ("judge_reasoning", pa.string()),    # the judge's reasoning (its raw reply when unparseable)
        ("judge_model", pa.string()),        # grading.judge.model; null: judge disabled
        ("rubric_version", pa.string()),     # hash of the rubric text the judge was given
        ("judge_attempts", pa.int64()),      # judge calls for the item (retries on unparseable replies)
        ("eval_awareness", pa.string()),     # tested | real | neither (runner.graders.awareness)
        ("eval_awareness_evidence", pa.string()),  # the clause that decided eval_awareness
        ("eval_awareness_judge", pa.string()),  # the judge model's awareness label (grading.awareness_judge)
        ("grading_version", pa.string()),    # hash of everything that decides the grade (runner.graders.version)
        ("prompt_digest", pa.string()),      # hash of the rendered prompt (runner.grid.prompt_digest)
        ("seed_rule", pa.string()),          # adaptive seeds: the rule and round that drew the seed; null: fixed
    ])


class ParquetSink:
    """Append rows as new files under `root/scenario=<family>/`."""

    def __init__(self, root: str | Path, run_id: str):
        self.root = Path(root)
        self.run_id = run_id
        self._seq = 0
        self.rows_written = 0
        self.files_written = 0

    def write(self, rows: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        schema = results_schema()
        by_family: dict[str, list[dict]] = {}
        for r in rows:
            by_family.setdefault(r[PARTITION_COLUMN], []).append(r)
        file_schema = schema.remove(schema.get_field_index(PARTITION_COLUMN))
        for family, part in by_family.items():
            table = pa.Table.from_pylist(part, schema=schema).drop_columns([PARTITION_COLUMN])
            assert table.schema.equals(file_schema)
            directory = self.root / f"{PARTITION_COLUMN}={family}"
            self._seq += 1
            final = directory / f"part-{self.run_id}-{self._seq:06d}.parquet"
            tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}{TMP_SUFFIX}"
            try:
                directory.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            except OSError as e:  # pyarrow's write errors are OSErrors too
                raise storage_error("results file", final, e, self.root, self.rows_written) from None
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            self.rows_written += len(part)
            self.files_written += 1

    def checkpoint_done(self, ckpt, metrics: dict, transcripts: list[dict]) -> None:
        return None  # every row is on disk already

    def close(self) -> list[str]:
        return []


def remove_stale_temporaries(root: str | Path) -> int:
    """Delete temporary files a killed writer left. Call only while holding the writer lock:
    then no live writer owns any of them. Returns how many were removed."""
    removed = 0
    for path in Path(root).glob(f"{PARTITION_COLUMN}=*/{TMP_PREFIX}*"):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def check_results_dataset(root: str | Path) -> None:
    """Refuse (UserError, one line naming the file) an output.dir holding any data file that is
    not a results file of this runner: see `results_file_problem`.

    Dataset readers (pyarrow, DuckDB, pandas, resume) would fail on such a file halfway through a
    run, mix foreign rows in, or (without an explicit schema) take the foreign file's schema for
    the dataset's. Checked before Ray starts, by every command that reads or writes a dataset.
    Only file footers are read (and the schema_version column where it has no statistics).
    """
    from runner.errors import UserError

    root = Path(root)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        # What dataset discovery skips: hidden and underscore names, at every level.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if name.startswith((".", "_")):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            where = f"not a results dataset: output.dir '{root}' holds {rel}"
            if not (len(rel.parts) == 2 and rel.parts[0].startswith(f"{PARTITION_COLUMN}=") and name.endswith(".parquet")):
                raise UserError(f"{where}, which is not part of a results dataset (only "
                                f"{PARTITION_COLUMN}=<family>/*.parquet belongs there); move it or choose another output.dir")
            try:
                problem = results_file_problem(path)
            except Exception as e:  # noqa: BLE001 -- any unreadable footer is the same user problem
                raise UserError(f"{where}, a corrupt Parquet file ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else 'unreadable'}); move it away and re-run") from None
            if problem:
                raise UserError(f"{where}, a Parquet file that is not a results file ({problem}); "
                                f"move it away or choose another output.dir")


def results_file_problem(path: str | Path) -> str | None:
    """Why a Parquet file is not a results file of this runner, or None when it is one.

    A results file has every contract column, no column the runner does not write (the partition
    column lives in the directory name), each with the runner's type, and a schema_version this
    runner reads. Columns added after a file was written may be absent: they read back as null.
    """
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    found = meta.schema.to_arrow_schema()
    expected = results_schema()
    missing = [c for c in CONTRACT_COLUMNS if c != PARTITION_COLUMN and c not in found.names]
    if missing:
        more = f" and {len(missing) - 1} more of the runner's columns" if len(missing) > 1 else ""
        return f"no column {missing[0]}{more}"
    for f in found:
        if f.name == PARTITION_COLUMN or f.name not in expected.names:
            return f"column {f.name} is not one the runner writes"
        want = expected.field(f.name).type
        if not f.type.equals(want):
            return f"column {f.name} has type {f.type}, not {want}"
    versions, nulls = _schema_versions(path, meta)
    if nulls:
        return f"{nulls} row(s) without a schema_version"
    unreadable = sorted(versions - READABLE_SCHEMA_VERSIONS)
    if unreadable:
        return (f"schema_version {unreadable[0]}; this runner reads "
                f"{', '.join(map(str, sorted(READABLE_SCHEMA_VERSIONS)))}")
    return None


def _schema_versions(path, meta) -> tuple[set[int], int]:
    """The schema_version values of a file and how many rows lack one: from the footer's column
    statistics when every row group has them, else by reading that one column."""
    import pyarrow.parquet as pq

    index = meta.schema.to_arrow_schema().get_field_index("schema_version")
    stats = [meta.row_group(i).column(index).statistics for i in range(meta.num_row_groups)]
    if all(s is not None and s.has_min_max and s.has_null_count for s in stats):
        # Each group's bounds are enough: the readable versions form one range.
        return {v for s in stats for v in (s.min, s.max)}, sum(s.null_count for s in stats)
    column = pq.read_table(path, columns=["schema_version"]).column(0)
    return {v for v in column.to_pylist() if v is not None}, column.null_count


def read_results(root: str | Path, columns: Iterable[str] | None = None, filter=None):
    """The dataset as a pyarrow Table; an empty table with the schema when nothing is written yet."""
    import pyarrow.dataset as ds

    root = Path(root)
    schema = results_schema()
    if not root.is_dir() or not any(root.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
        t = schema.empty_table()
        return t.select(list(columns)) if columns else t
    dataset = ds.dataset(str(root), schema=schema, partitioning="hive", format="parquet")
    return dataset.to_table(columns=list(columns) if columns else None, filter=filter)


def done_item_ids(root: str | Path) -> set[str]:
    """item_ids that already have an `ok` row: resume skips them.

    Only item_id and status are read, and rows that are not `ok` are dropped while scanning.
    """
    import pyarrow.dataset as ds

    t = read_results(root, columns=["item_id"], filter=ds.field("status") == "ok")
    return set(t.column("item_id").to_pylist())


def latest_rows(table, grading_version: str | None = None, prefer: str | None = None):
    """One row per item_id: the newest `ok` row (by created_at), else the newest row.

    An item has one `ok` row per grading (a sweep's, then one per `runner grade`), so reports
    show the newest grading, and a later `ok` row supersedes an earlier `error` row. Given
    `grading_version`, only rows of that grading count; given `prefer`, an `ok` row of that
    grading wins over newer ones of another (a sweep reports its own labels even after a
    re-grade). Without a `created_at` column, or on a tie, the row read later wins.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if grading_version is not None:
        table = table.filter(pc.equal(table["grading_version"], grading_version))
    ids = table["item_id"].to_pylist()
    ok = [s == "ok" for s in table["status"].to_pylist()]
    created = table["created_at"].to_pylist() if "created_at" in table.column_names else [None] * len(ids)
    versions = table["grading_version"].to_pylist() if prefer is not None else [None] * len(ids)
    rank = [(ok[i], ok[i] and prefer is not None and versions[i] == prefer, _when(created[i]))
            for i in range(len(ids))]
    best: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        j = best.get(item_id)
        if j is None or rank[i] >= rank[j]:
            best[item_id] = i
    return table.take(pa.array(sorted(best.values()), type=pa.int64()))


def _when(ts):
    """A sortable created_at: rows without one (there should be none) sort first."""
    return (ts is not None, ts.timestamp() if ts is not None else 0.0)
