"""Bad input on every path: exit status 2, one line on stderr, no traceback, nothing written.

Each case fails before Ray starts, so these run in a second or two (no engine, no Ray).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.cli import main

REPO = Path(__file__).resolve().parent.parent


def _run(capsys, *argv: str) -> str:
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner: "), err
    assert "Traceback" not in err
    return lines[0]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def _model_dir(path: Path, truncate: int = 0) -> Path:
    """A checkpoint with a config and one safetensors file, optionally cut short."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (path / "tokenizer.json").write_text("{}")
    data = b"\0" * 64
    header = json.dumps({"w": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + data
    (path / "model.safetensors").write_bytes(blob[:len(blob) - truncate])
    return path


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


def test_config_file_that_is_not_text(capsys, tmp_path, out):
    cfg = tmp_path / "bin.yaml"
    cfg.write_bytes(bytes(range(128, 256)) * 4)
    line = _run(capsys, "sweep", str(cfg), f"output.dir={out}")
    assert "not UTF-8 text" in line and str(cfg) in line
    assert not out.exists()


@pytest.mark.parametrize("where", ["/proc/x", "FILE/sub"])
def test_output_dir_that_cannot_be_created(capsys, tmp_path, where):
    blocker = tmp_path / "FILE"
    blocker.write_text("a file, not a directory")
    target = where.replace("FILE", str(blocker))
    line = _run(capsys, "sweep", f"models.0.path={_model_dir(tmp_path / 'm')}", f"output.dir={target}")
    assert target in line or str(blocker) in line
    assert not Path("/proc/x").exists()


def test_empty_and_garbage_checkpoint_directories(capsys, tmp_path, out):
    (tmp_path / "empty").mkdir()
    assert "neither a HF model directory" in _run(capsys, "sweep", f"models.0.path={tmp_path / 'empty'}",
                                                  f"output.dir={out}")
    garbage = tmp_path / "garbage" / "checkpoint-100"
    garbage.mkdir(parents=True)
    (garbage / "config.json").write_text('{"model_type": "llama"}')
    (garbage / "notes.txt").write_text("no weights here")
    assert "no weight files" in _run(capsys, "sweep", f"models.0.path={garbage.parent}", f"output.dir={out}")
    assert not out.exists()


def test_truncated_safetensors(capsys, tmp_path, out):
    run = tmp_path / "run"
    _model_dir(run / "checkpoint-100", truncate=10)
    line = _run(capsys, "sweep", f"models.0.path={run}", f"output.dir={out}")
    assert "model.safetensors is truncated" in line
    assert not out.exists()


def test_scenario_pack_with_broken_yaml(capsys, tmp_path, out):
    pack = tmp_path / "packs" / "broken"
    shutil.copytree(REPO / "scenarios" / "blackmail", pack)
    with open(pack / "pack.yaml", "a") as fh:
        fh.write("\nbroken: [unclosed\n")
    line = _run(capsys, "sweep", f"models.0.path={_model_dir(tmp_path / 'm')}", f"scenarios.dirs=[{pack}]",
                f"output.dir={out}")
    assert "broken/pack.yaml: not valid YAML (line" in line
    assert not out.exists()
    assert "not valid YAML" in _run(capsys, "validate", str(pack))


def test_grade_on_a_directory_that_is_not_a_results_dataset(capsys, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert "not a results dataset" in _run(capsys, "grade", str(tmp_path / "notes"))
    assert "not found" in _run(capsys, "grade", str(tmp_path / "missing"))
    assert _tree(tmp_path / "notes") == ["a.txt"]


def test_watch_on_a_missing_directory(capsys, tmp_path, out):
    line = _run(capsys, "watch", str(tmp_path / "missing"), f"output.dir={out}")
    assert "run directory not found" in line
    assert not out.exists()  # the lock's directory is removed again: nothing left behind


def _file_schema():
    from runner.sinks.parquet import results_schema

    schema = results_schema()
    return schema.remove(schema.get_field_index("scenario"))


def _results_file(path: Path) -> None:
    pq.write_table(_file_schema().empty_table(), path)


def _one_row(**change) -> pa.Table:
    """One row as the runner writes it, with `change` applied (a value, or a (name, array) column)."""
    schema = _file_schema()
    row = {f.name: None for f in schema} | {"run_id": "r", "item_id": "i", "status": "ok", "schema_version": 1,
                                            "checkpoint_step": 100, "seed": 0}
    t = pa.Table.from_pylist([row], schema=schema)
    for name, value in change.items():
        column = value if isinstance(value, pa.Array) else pa.array([value], type=schema.field(name).type)
        t = t.set_column(t.schema.get_field_index(name), name, column) if name in t.column_names \
            else t.append_column(name, column)
    return t


BAD_FILES = {
    "foreign": (lambda part, out: pq.write_table(pa.table({"a": [1]}), part / "x.parquet"),
                "not a results file (no column run_id and 12 more of the runner's columns)"),
    # D7: three of the runner's columns are not enough to be part of the dataset.
    "lookalike": (lambda part, out: pq.write_table(pa.table({"item_id": ["i"], "status": ["ok"], "run_id": ["r"]}),
                                                   part / "x.parquet"),
                  "not a results file (no column condition and 9 more of the runner's columns)"),
    "corrupt": (lambda part, out: (part / "part-cut.parquet").write_bytes((part / "part-good.parquet").read_bytes()[:200]),
                "a corrupt Parquet file"),
    "wrong_type": (lambda part, out: pq.write_table(_one_row(checkpoint_step=pa.array(["x"])), part / "x.parquet"),
                   "not a results file (column checkpoint_step has type string, not int64)"),
    "extra_column": (lambda part, out: pq.write_table(_one_row(notes=pa.array(["n"])), part / "x.parquet"),
                     "not a results file (column notes is not one the runner writes)"),
    "partition_column": (lambda part, out: pq.write_table(_one_row(scenario=pa.array(["blackmail"])), part / "x.parquet"),
                         "not a results file (column scenario is not one the runner writes)"),
    "newer_schema": (lambda part, out: pq.write_table(_one_row(schema_version=2), part / "x.parquet"),
                     "not a results file (schema_version 2; this runner reads 1)"),
    "stray": (lambda part, out: pq.write_table(pa.table({"a": [1]}), out / "data.parquet"),
              "not part of a results dataset"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_output_dir_holding_a_foreign_or_corrupt_parquet_file(capsys, tmp_path, out, bad):
    """Every command that reads or writes a dataset refuses it, naming the file, and leaves it as it was."""
    part = out / "scenario=blackmail"
    part.mkdir(parents=True)
    pq.write_table(_one_row(), part / "part-good.parquet")   # a finished row file: must survive untouched
    good = (part / "part-good.parquet").read_bytes()
    make, expect = BAD_FILES[bad]
    make(part, out)
    before = _tree(out)
    model = _model_dir(tmp_path / "m")
    bad_file = next(p for p in sorted(out.rglob("*.parquet")) if p.name != "part-good.parquet").relative_to(out)
    for argv in (["sweep", f"models.0.path={model}", f"output.dir={out}"], ["grade", str(out)],
                 ["watch", str(tmp_path), f"output.dir={out}", "--max-polls=1"], ["report", str(out)]):
        line = _run(capsys, *argv)
        assert expect in line and str(bad_file) in line, (argv[0], line)
    assert _tree(out) == before
    assert (part / "part-good.parquet").read_bytes() == good
