from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.checkpoints import Checkpoint, discover_checkpoints, localize_checkpoint
from runner.config import ModelConfig, load_config
from runner.errors import CheckpointError, ConfigError
from tests.lora_adapters import write_adapter


def test_random_run_has_three_complete_checkpoints_in_step_order(random_run):
    cks = discover_checkpoints(ModelConfig(name="d", path=str(random_run)))
    assert [c.step for c in cks] == [100, 200, 300]
    assert all(c.tokenizer == c.path for c in cks)


def test_single_model_dir_is_one_checkpoint(random_run):
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=str(random_run / "checkpoint-200")))
    assert ck.step == 200 and ck.name == "checkpoint-200"


def test_incomplete_checkpoint_is_skipped(random_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(random_run / "checkpoint-100", run / "checkpoint-100")
    (run / "checkpoint-200").mkdir(parents=True)
    (run / "checkpoint-200" / "config.json").write_text("{}")  # weights not written yet
    assert [c.name for c in discover_checkpoints(ModelConfig(name="d", path=str(run)))] == ["checkpoint-100"]


def test_missing_shard_in_index_makes_it_incomplete(random_run, tmp_path):
    ck = tmp_path / "checkpoint-5"
    shutil.copytree(random_run / "checkpoint-100", ck)
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="missing weight shards model-00002.safetensors"):
        discover_checkpoints(ModelConfig(name="d", path=str(ck)))


@pytest.mark.parametrize("setup, needle", [
    (lambda p: None, "path not found"),
    (lambda p: p.write_text("x"), "not a directory"),
    (lambda p: p.mkdir(), "neither a HF model directory"),
])
def test_bad_model_paths(tmp_path, setup, needle):
    p = tmp_path / "m"
    setup(p)
    with pytest.raises(CheckpointError, match=needle):
        discover_checkpoints(ModelConfig(name="d", path=str(p)))


def test_explicit_checkpoint_list_must_exist(random_run):
    with pytest.raises(CheckpointError, match="not found in .*: checkpoint-999"):
        discover_checkpoints(ModelConfig(name="d", path=str(random_run), checkpoints=["checkpoint-999"]))
    cks = discover_checkpoints(ModelConfig(name="d", path=str(random_run), checkpoints=["checkpoint-300"]))
    assert [c.step for c in cks] == [300]


def test_partially_written_safetensors_is_incomplete(random_run, tmp_path):
    ck = tmp_path / "checkpoint-7"
    shutil.copytree(random_run / "checkpoint-100", ck)
    weights = ck / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a trainer mid-write
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        discover_checkpoints(ModelConfig(name="d", path=str(ck)))
    weights.write_bytes(data)
    assert discover_checkpoints(ModelConfig(name="d", path=str(ck)))


def test_marker_and_quiet_period_rules(random_run, tmp_path):
    ck = tmp_path / "checkpoint-8"
    shutil.copytree(random_run / "checkpoint-100", ck)
    with pytest.raises(CheckpointError, match="no COMPLETE marker yet"):
        discover_checkpoints(ModelConfig(name="d", path=str(ck), complete_marker="COMPLETE"))
    (ck / "COMPLETE").write_text("")
    assert discover_checkpoints(ModelConfig(name="d", path=str(ck), complete_marker="COMPLETE"))
    with pytest.raises(CheckpointError, match="waiting for 3600s without changes"):
        discover_checkpoints(ModelConfig(name="d", path=str(ck), complete_after_seconds=3600))


# --- remote run directories (filesystem URIs) -------------------------------------------------


def _run_copy(random_run, dest, steps=(100, 200)):
    for s in steps:
        shutil.copytree(random_run / f"checkpoint-{s}", dest / f"checkpoint-{s}")
    return dest


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_file_uri_run_is_listed_through_pyarrow_and_truncated_weights_are_skipped(random_run, tmp_path, caplog):
    run = _run_copy(random_run, tmp_path / "run", steps=(100, 200, 300))
    _truncate(run / "checkpoint-300" / "model.safetensors")  # the trainer is still writing it
    cks = discover_checkpoints(ModelConfig(name="d", path=f"file://{run}"))
    assert [c.step for c in cks] == [100, 200]
    assert cks[0].path == f"file://{run}/checkpoint-100" and cks[0].tokenizer == cks[0].path
    assert "checkpoint-300: model.safetensors is truncated" in caplog.text


def test_remote_checkpoint_is_copied_to_the_cache_once_per_version(random_run, tmp_path):
    run = _run_copy(random_run, tmp_path / "run", steps=(100,))
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=f"file://{run}"))
    cache = tmp_path / "cache"
    local = localize_checkpoint(ck, cache)
    copy = Path(local.path)
    assert copy.parent == cache / "remote" and copy.name.startswith("checkpoint-100-")
    assert local.tokenizer == local.path and local.key == ck.key
    for f in (run / "checkpoint-100").iterdir():
        assert (copy / f.name).read_bytes() == f.read_bytes()
    assert not [p for p in (cache / "remote").iterdir() if p.name.startswith(".")]  # no temp dir left
    assert localize_checkpoint(ck, cache).path == local.path  # unchanged: reused, not copied again
    (run / "checkpoint-100" / "generation_config.json").write_text("{}")  # rewritten in place
    again = localize_checkpoint(ck, cache)
    assert again.path != local.path and (Path(again.path) / "generation_config.json").is_file()


def test_remote_copy_leaves_trainer_state_behind(random_run, tmp_path):
    """Optimizer, scheduler and RNG states and DeepSpeed shard dirs sit beside the weights in
    trainer checkpoints; an engine never reads them, so no node downloads them."""
    run = _run_copy(random_run, tmp_path / "run", steps=(100,))
    ck_dir = run / "checkpoint-100"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state_0.pth"):
        (ck_dir / name).write_bytes(b"x" * 1000)
    (ck_dir / "global_step100").mkdir()
    (ck_dir / "global_step100" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    (ck_dir / "trainer_state.json").write_text('{"global_step": 100}')  # the Trainer's completion marker
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=f"file://{run}"))
    copied = {p.name for p in Path(localize_checkpoint(ck, tmp_path / "cache").path).iterdir()}
    assert {"config.json", "model.safetensors"} <= copied
    assert not copied & {"optimizer.pt", "scheduler.pt", "rng_state_0.pth", "global_step100"}


def test_local_checkpoint_is_not_copied(random_run, tmp_path):
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=str(random_run / "checkpoint-100")))
    assert localize_checkpoint(ck, tmp_path / "cache") == ck
    assert not (tmp_path / "cache").exists()


def test_copy_that_turns_out_truncated_is_refused_and_not_cached(random_run, tmp_path):
    run = _run_copy(random_run, tmp_path / "run", steps=(100,))
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=f"file://{run}"))
    _truncate(run / "checkpoint-100" / "model.safetensors")  # changed after discovery
    with pytest.raises(CheckpointError, match="is not usable: model.safetensors is truncated"):
        localize_checkpoint(ck, tmp_path / "cache")
    assert list((tmp_path / "cache" / "remote").iterdir()) == []


@pytest.fixture
def memory_run(random_run):
    """The run uploaded to fsspec's in-memory filesystem (a filesystem pyarrow knows only through fsspec)."""
    fsspec = pytest.importorskip("fsspec")
    import uuid

    fs = fsspec.filesystem("memory")
    root = f"/bucket-{uuid.uuid4().hex[:8]}/run"
    for s in (100, 200):
        for f in (random_run / f"checkpoint-{s}").iterdir():
            data = f.read_bytes()
            if s == 200 and f.name == "model.safetensors":
                data = data[: len(data) - 100]  # truncated upload
            fs.pipe(f"{root}/checkpoint-{s}/{f.name}", data)
    yield f"memory://{root}"
    fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_in_memory_filesystem_through_fsspec(memory_run, random_run, tmp_path):
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=memory_run))  # checkpoint-200 is truncated
    assert ck.name == "checkpoint-100" and ck.path == f"{memory_run}/checkpoint-100"
    local = localize_checkpoint(ck, tmp_path)
    assert (Path(local.path) / "model.safetensors").read_bytes() == \
        (random_run / "checkpoint-100" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="modification times are unknown"):  # fsspec memory has no mtime
        discover_checkpoints(ModelConfig(name="d", path=memory_run, complete_after_seconds=5))


def test_remote_tokenizer_in_the_run_directory_is_fetched_alone(random_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(random_run / "tokenizer", run)  # tokenizer files at the run's root
    ck_dir = run / "checkpoint-100"
    ck_dir.mkdir()
    for f in (random_run / "checkpoint-100").iterdir():
        if f.name in ("config.json", "model.safetensors"):
            shutil.copy(f, ck_dir / f.name)
    (ck,) = discover_checkpoints(ModelConfig(name="d", path=f"file://{run}"))
    assert ck.tokenizer == f"file://{run}"
    local = localize_checkpoint(ck, tmp_path / "cache")
    names = {p.name for p in Path(local.tokenizer).iterdir()}
    assert "tokenizer.json" in names and "checkpoint-100" not in names and "config.json" not in names


def test_remote_quiet_period_and_marker_use_the_remote_listing(random_run, tmp_path):
    run = _run_copy(random_run, tmp_path / "run", steps=(100,))
    uri = f"file://{run}"
    with pytest.raises(CheckpointError, match="waiting for 3600s without changes"):
        discover_checkpoints(ModelConfig(name="d", path=uri, complete_after_seconds=3600))
    with pytest.raises(CheckpointError, match="no COMPLETE marker yet"):
        discover_checkpoints(ModelConfig(name="d", path=uri, complete_marker="COMPLETE"))
    (run / "checkpoint-100" / "COMPLETE").write_text("")
    assert discover_checkpoints(ModelConfig(name="d", path=uri, complete_marker="COMPLETE"))


@pytest.mark.parametrize("path, error, needle", [
    ("nosuchfs://bucket/run", ConfigError, "unknown filesystem scheme 'nosuchfs://'"),
    ("file:///definitely/not/here", CheckpointError, "path not found: file:///definitely/not/here"),
    # A real S3 filesystem whose endpoint refuses connections (no credentials or network needed).
    ("s3://bucket/run?region=us-east-1&scheme=http&endpoint_override=127.0.0.1:9", CheckpointError,
     "cannot read s3://bucket/run.*Could not connect"),
])
def test_remote_errors_are_one_clear_user_error(path, error, needle):
    with pytest.raises(error, match=needle) as e:
        discover_checkpoints(ModelConfig(name="d", path=path))
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_unknown_scheme_without_fsspec_names_the_fix(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if fsspec were not installed
    with pytest.raises(ConfigError, match="unknown filesystem scheme 'memory://'.*install fsspec"):
        discover_checkpoints(ModelConfig(name="d", path="memory://bucket/run"))


# --- LoRA adapter checkpoints -----------------------------------------------------------------


@pytest.fixture
def adapter_run(random_run, tmp_path):
    base = random_run / "checkpoint-100"
    run = tmp_path / "adapters"
    write_adapter(run / "checkpoint-10", base, rank=4, seed=1)
    write_adapter(run / "checkpoint-20", base, rank=8, seed=2)
    write_adapter(run / "checkpoint-30", base, rank=8, seed=3)
    _truncate(run / "checkpoint-30" / "adapter_model.safetensors")   # still being written
    (run / "checkpoint-40").mkdir()
    (run / "checkpoint-40" / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')  # no weights yet
    return base, run


def test_adapter_checkpoints_are_discovered_with_the_base_model(adapter_run, caplog):
    base, run = adapter_run
    cks = discover_checkpoints(ModelConfig(name="lora", path=str(run), base_model=str(base)))
    assert [(c.name, c.step, c.lora_rank) for c in cks] == [("checkpoint-10", 10, 4), ("checkpoint-20", 20, 8)]
    assert all(c.path == str(base) and c.tokenizer == str(base) for c in cks)
    assert cks[0].adapter == str(run / "checkpoint-10")
    assert "checkpoint-30: adapter_model.safetensors is truncated" in caplog.text
    assert "checkpoint-40: no adapter weights" in caplog.text
    # max_lora_rank raises the rank the engine reserves (never lowers it)
    cks = discover_checkpoints(ModelConfig(name="lora", path=str(run), base_model=str(base), max_lora_rank=16))
    assert [c.lora_rank for c in cks] == [16, 16]
    # one adapter directory is one checkpoint
    (one,) = discover_checkpoints(ModelConfig(name="lora", path=str(run / "checkpoint-20"), base_model=str(base)))
    assert one.step == 20 and one.adapter == str(run / "checkpoint-20")


def test_remote_adapters_and_base_model_are_copied_before_loading(adapter_run, tmp_path):
    base, run = adapter_run
    cks = discover_checkpoints(ModelConfig(name="lora", path=f"file://{run}", base_model=f"file://{base}"))
    local = localize_checkpoint(cks[1], tmp_path / "cache")
    assert Path(local.adapter).parent == tmp_path / "cache" / "remote"
    assert (Path(local.adapter) / "adapter_model.safetensors").read_bytes() == \
        (run / "checkpoint-20" / "adapter_model.safetensors").read_bytes()
    assert Path(local.path).parent == tmp_path / "cache" / "remote" and local.tokenizer == local.path


@pytest.mark.parametrize("setup, needle", [
    (lambda base, tmp: str(tmp / "nope"), "base_model: directory not found"),
    (lambda base, tmp: str(tmp), "is not a complete Hugging Face model directory: no config.json"),
])
def test_bad_base_model(adapter_run, tmp_path, setup, needle):
    base, run = adapter_run
    with pytest.raises(CheckpointError, match=needle):
        discover_checkpoints(ModelConfig(name="lora", path=str(run), base_model=setup(base, tmp_path)))


def test_full_checkpoints_are_not_adapters(random_run, adapter_run):
    base, run = adapter_run
    with pytest.raises(CheckpointError, match="checkpoint-100: no adapter_config.json"):
        discover_checkpoints(ModelConfig(name="lora", path=str(random_run), base_model=str(base)))
    with pytest.raises(CheckpointError, match="neither a LoRA adapter directory"):
        discover_checkpoints(ModelConfig(name="lora", path=str(random_run / "tokenizer"), base_model=str(base)))


def test_item_id_includes_the_adapters_base_model():
    from runner.grid import SamplingParams, make_item_id

    p = SamplingParams(1.0, 1.0, 16)
    full = Checkpoint("m", "checkpoint-10", 10, "/run/checkpoint-10", "/tok")
    on_a = Checkpoint("m", "checkpoint-10", 10, "/base-a", "/tok", adapter="/run/checkpoint-10", lora_rank=8)
    on_b = Checkpoint("m", "checkpoint-10", 10, "/base-b", "/tok", adapter="/run/checkpoint-10", lora_rank=8)
    ids = {make_item_id("s", "u", p, c, 0) for c in (full, on_a, on_b)}
    assert len(ids) == 3


@pytest.mark.parametrize("override, needle", [
    ("models.0.max_lora_rank=1000", "max_lora_rank must be in 1..512"),
    ("models.0.base_model=' '", "base_model must not be empty"),
])
def test_lora_config_values_are_checked(tmp_path, override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [override, f"output.dir={tmp_path}/out"])
