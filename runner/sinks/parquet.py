"""The results dataset: Hive-partitioned Parquet (by `scenario`), append-only, atomic files.

Each write goes to a hidden temporary file that is fsynced and renamed into place, so a crash
never leaves a partial file that readers see. The temporary name starts with '.' (pyarrow and
pandas skip it) and does not end in `.parquet` (DuckDB's `**/*.parquet` glob skips it); the
next run into the directory, holding the writer lock (`runner.sinks.lock`), deletes any a
killed run left behind.

    pyarrow.dataset.dataset(DIR, partitioning="hive")   # reads it; so do DuckDB and pandas
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

SCHEMA_VERSION = 1
PARTITION_COLUMN = "scenario"
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".parquet.partial"


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
            directory.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            final = directory / f"part-{self.run_id}-{self._seq:06d}.parquet"
            tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}{TMP_SUFFIX}"
            try:
                pq.write_table(table, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    tmp.unlink()
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
    """Refuse (UserError) an output.dir whose data files are not all readable results Parquet.

    Dataset readers (pyarrow, DuckDB, pandas, resume) would fail on such a file halfway through a
    run, or mix foreign rows in; checked before Ray starts. Only file footers are read.
    """
    import pyarrow.parquet as pq

    from runner.errors import UserError

    root = Path(root)
    if not root.is_dir():
        return
    schema = results_schema()
    required = ("item_id", "status", "run_id")
    for dirpath, dirnames, filenames in os.walk(root):
        # What dataset discovery skips: hidden and underscore names, at every level.
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        for name in filenames:
            if name.startswith((".", "_")):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            where = f"not a results dataset: output.dir '{root}' holds {rel}"
            if not (len(rel.parts) == 2 and rel.parts[0].startswith(f"{PARTITION_COLUMN}=") and name.endswith(".parquet")):
                raise UserError(f"{where}, which is not part of a results dataset (only "
                                f"{PARTITION_COLUMN}=<family>/*.parquet belongs there); move it or choose another output.dir")
            try:
                file_schema = pq.read_schema(path)
            except Exception as e:  # noqa: BLE001 -- any unreadable footer is the same user problem
                raise UserError(f"{where}, a corrupt Parquet file ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else 'unreadable'}); move it away and re-run") from None
            missing = [c for c in required if c not in file_schema.names]
            clash = [f.name for f in file_schema if f.name in schema.names and not f.type.equals(schema.field(f.name).type)]
            if missing or clash:
                why = f"no column {missing[0]}" if missing else f"column {clash[0]} has type {file_schema.field(clash[0]).type}"
                raise UserError(f"{where}, a Parquet file that is not a results file ({why}); "
                                f"move it away or choose another output.dir")


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
