"""`runner checkpoints RUN --json` on each framework's run directory, with no setting beyond the path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.cli import main
from tests.checkpoints import trainer_runs as T

KEYS = ["name", "step", "model_dir", "kind", "base_model", "ready", "reason"]


@pytest.fixture(scope="module")
def src(random_run) -> Path:
    return random_run / "checkpoint-100"


def listing(capsys, run, *args) -> list[dict]:
    capsys.readouterr()
    code = main(["checkpoints", str(run), *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = json.loads(out)
    assert all(list(r) == KEYS for r in rows)
    return rows


def summary(rows) -> list[tuple]:
    return [(r["name"], r["step"], r["kind"], r["ready"]) for r in rows]


def reason(rows, name) -> str:
    return next(r["reason"] for r in rows if r["name"] == name)


def test_trl_full_checkpoints_marker_and_final_save_in_the_root(capsys, src, tmp_path, caplog):
    run = T.trl_run(src, tmp_path / "trl")
    rows = listing(capsys, run)
    assert summary(rows) == [("checkpoint-10", 10, "full", True), ("checkpoint-20", 20, "full", True),
                             ("checkpoint-30", 30, "full", False), ("final", 35, "full", True)]
    assert "no trainer_state.json yet" in reason(rows, "checkpoint-30")
    assert rows[0]["model_dir"] == str(run / "checkpoint-10") and rows[3]["model_dir"] == str(run)
    assert rows[0]["base_model"] is None and rows[0]["reason"] is None


def test_trl_root_without_a_known_step_is_not_guessed(capsys, src, tmp_path):
    run = T.trl_run(src, tmp_path / "trl", in_progress=())
    (run / "trainer_state.json").unlink()
    rows = listing(capsys, run)
    assert summary(rows) == [("checkpoint-10", 10, "full", True), ("checkpoint-20", 20, "full", True)]
    capsys.readouterr()
    main(["checkpoints", str(run)])
    assert "no trainer_state.json gives its step" in capsys.readouterr().out


def test_trl_peft_adapters_take_their_base_model_from_adapter_config(capsys, src, tmp_path):
    run = T.trl_run(src, tmp_path / "peft", peft=True, final_step=None)
    rows = listing(capsys, run)
    assert summary(rows) == [("checkpoint-10", 10, "adapter", True), ("checkpoint-20", 20, "adapter", True),
                             ("checkpoint-30", 30, "adapter", False)]
    assert {r["base_model"] for r in rows} == {str(src)}


def test_adapter_whose_base_is_not_here_names_the_key_to_set(capsys, src, tmp_path):
    run = T.trl_run(src, tmp_path / "peft", peft=True, final_step=None, in_progress=())
    for d in run.glob("checkpoint-*"):
        cfg = json.loads((d / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = "Qwen/Qwen2.5-0.5B-Instruct"
        (d / "adapter_config.json").write_text(json.dumps(cfg))
    rows = listing(capsys, run)
    assert [r["ready"] for r in rows] == [False, False]
    assert "set models[].base_model" in rows[0]["reason"] and "'Qwen/Qwen2.5-0.5B-Instruct'" in rows[0]["reason"]
    # set, it is used
    rows = listing(capsys, run, f"models.0.base_model={src}")
    assert [(r["kind"], r["ready"], r["base_model"]) for r in rows] == [("adapter", True, str(src))] * 2


def test_verl_fsdp_with_hf_model(capsys, src, tmp_path):
    run = T.verl_run(src, tmp_path / "verl")
    rows = listing(capsys, run)
    assert summary(rows) == [("global_step_5", 5, "full", True), ("global_step_10", 10, "full", True),
                             ("global_step_15", 15, "full", False)]
    assert rows[0]["model_dir"] == str(run / "global_step_5" / "actor" / "huggingface")
    assert "not yet in latest_checkpointed_iteration.txt (it holds 10)" in reason(rows, "global_step_15")


def test_verl_shards_only_names_the_setting_and_the_converter(capsys, src, tmp_path):
    run = T.verl_run(src, tmp_path / "verl", hf_model=False, in_progress=())
    rows = listing(capsys, run)
    assert [r["ready"] for r in rows] == [False, False]
    why = reason(rows, "global_step_5")
    assert "save_contents" in why and "hf_model" in why and "verl.model_merger merge --backend fsdp" in why
    capsys.readouterr()
    main(["checkpoints", str(run)])
    out = capsys.readouterr().out
    assert "2 checkpoints not ready for one reason" in out


def test_verl_megatron(capsys, src, tmp_path):
    run = T.verl_run(src, tmp_path / "verl", megatron=True, in_progress=())
    rows = listing(capsys, run)
    assert summary(rows) == [("global_step_5", 5, "full", True), ("global_step_10", 10, "full", True)]
    assert rows[0]["model_dir"].endswith("global_step_5/actor/model/huggingface")


def test_openrlhf_hf_dirs_best_copy_and_shards_only(capsys, src, tmp_path):
    run = T.openrlhf_run(src, tmp_path / "openrlhf")
    rows = listing(capsys, run)
    assert summary(rows) == [("global_step4_hf", 4, "full", True), ("best_global_step8_hf", 8, "full", False),
                             ("global_step8_hf", 8, "full", True)]
    assert "same weights as global_step8_hf" in reason(rows, "best_global_step8_hf")
    shards_only = T.openrlhf_run(src, tmp_path / "ds", save_hf=False)
    rows = listing(capsys, shards_only)
    assert summary(rows) == [("global_step4", 4, "full", False), ("global_step8", 8, "full", False)]
    assert "--ckpt.save_hf" in rows[0]["reason"]


def test_openrlhf_recent_save_waits_for_the_quiet_period(capsys, src, tmp_path):
    run = T.openrlhf_run(src, tmp_path / "openrlhf", steps=(4,), best=None)
    T.write_model(src, run / "global_step8_hf", shards=2)   # just written, no marker to say it is done
    rows = listing(capsys, run)
    assert summary(rows) == [("global_step4_hf", 4, "full", True), ("global_step8_hf", 8, "full", False)]
    assert "waiting for 30s without changes" in reason(rows, "global_step8_hf")
    rows = listing(capsys, run, "models.0.complete_after_seconds=0")   # the user's setting wins
    assert [r["ready"] for r in rows] == [True, True]


def test_nemo_rl_consolidated_tokenizer_beside_and_tmp_never(capsys, src, tmp_path):
    run = T.nemo_rl_run(src, tmp_path / "nemo")
    rows = listing(capsys, run)
    assert summary(rows) == [("step_2", 2, "full", True), ("step_4", 4, "full", True), ("tmp_step_6", 6, "full", False)]
    assert rows[0]["model_dir"] == str(run / "step_2" / "policy" / "weights" / "model" / "consolidated")
    assert "renames tmp_step_6 to step_6" in reason(rows, "tmp_step_6")
    dcp = T.nemo_rl_run(src, tmp_path / "dcp", consolidated=False, in_progress=())
    rows = listing(capsys, dcp)
    assert [r["ready"] for r in rows] == [False, False] and "save_consolidated: true" in rows[0]["reason"]


def test_nemo_rl_checkpoint_uses_the_policy_tokenizer(src, tmp_path):
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig

    run = T.nemo_rl_run(src, tmp_path / "nemo", in_progress=())
    cks = discover_checkpoints(ModelConfig(name="n", path=str(run)))
    assert [c.tokenizer for c in cks] == [str(run / f"step_{s}" / "policy" / "tokenizer") for s in (2, 4)]


def test_torchtune_epochs_full_weights_beside_adapter_files(capsys, src, tmp_path):
    run = T.torchtune_run(src, tmp_path / "tt")
    rows = listing(capsys, run)
    assert summary(rows) == [("epoch_0", 0, "full", True), ("epoch_1", 1, "full", True)]


def test_skyrl_checkpoints_are_not_loadable_and_exports_are(capsys, src, tmp_path):
    run = T.skyrl_run(src, tmp_path / "ckpts")
    rows = listing(capsys, run)
    assert summary(rows) == [("global_step_10", 10, "full", False), ("global_step_20", 20, "full", False),
                             ("global_step_30", 30, "full", False)]
    assert "hf_save_interval" in reason(rows, "global_step_10")
    assert "not yet in latest_ckpt_global_step.txt (it holds 20)" in reason(rows, "global_step_30")
    export = T.skyrl_export(src, tmp_path / "exports")
    rows = listing(capsys, export)
    assert summary(rows) == [("global_step_10", 10, "full", True), ("global_step_20", 20, "full", True)]
    assert rows[0]["model_dir"] == str(export / "global_step_10" / "policy")


def test_art_lora_steps(capsys, src, tmp_path):
    run = T.art_run(src, tmp_path / ".art" / "proj" / "models" / "agent-1")
    rows = listing(capsys, run)
    assert summary(rows) == [("0001", 1, "adapter", True), ("0002", 2, "adapter", True)]
    assert rows[0]["base_model"] == str(src)


# --- completeness and bad checkpoints (issue 16 D1, D10) -----------------------------------


def test_shards_without_their_index_or_missing_one_are_not_complete(capsys, src, tmp_path):
    run = tmp_path / "run"
    T.write_model(src, run / "checkpoint-1", shards=2)
    d = T.write_model(src, run / "checkpoint-2", shards=2)
    (d / "model.safetensors.index.json").unlink()   # shards written, index not yet
    d = T.write_model(src, run / "checkpoint-3", shards=2)
    (d / "model-00002-of-00002.safetensors").unlink()
    (d / "model.safetensors.index.json").unlink()
    rows = listing(capsys, run)
    assert [r["ready"] for r in rows] == [True, False, False]
    assert "sharded weights without their index (2 of 2 shards" in reason(rows, "checkpoint-2")
    assert "(1 of 2 shards" in reason(rows, "checkpoint-3")


def test_adapter_files_are_never_full_weights(capsys, src, tmp_path):
    run = tmp_path / "run"
    d = run / "checkpoint-1"
    write = T.write_adapter(d, src)
    assert write
    T.write_config(src, d)   # a config.json beside an adapter does not make it a model
    rows = listing(capsys, run)
    assert rows[0]["ready"] is False and "only LoRA adapter weights" in rows[0]["reason"]


@pytest.mark.parametrize("name, content, needle", [
    ("config.json", b'{"archi', "config.json is not valid JSON"),
    ("config.json", b"{}", "config.json names neither 'architectures' nor 'model_type'"),
    ("config.json", b"\xff\xfe\x00binary", "config.json is not UTF-8 text"),
    ("tokenizer_config.json", b'{"chat_template": ', "tokenizer_config.json is not valid JSON"),
    ("tokenizer.json", b"[1, 2]", "tokenizer.json is not a JSON object"),
])
def test_a_broken_checkpoint_is_skipped_naming_the_file(capsys, src, tmp_path, name, content, needle, caplog):
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig

    run = tmp_path / "run"
    T.write_model(src, run / "checkpoint-100")
    bad = T.write_model(src, run / "checkpoint-200")
    (bad / name).write_bytes(content)
    rows = listing(capsys, run)
    assert [r["ready"] for r in rows] == [True, False] and needle in rows[1]["reason"]
    assert [c.name for c in discover_checkpoints(ModelConfig(name="m", path=str(run)))] == ["checkpoint-100"]
    assert "checkpoint-200: " in caplog.text and needle in caplog.text
    shutil.rmtree(run / "checkpoint-100")   # nothing usable left: exit 2, one line, nothing written
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["sweep", "--dry-run", f"models.0.path={run}", f"output.dir={out}"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_dry_run_reports_a_skipped_checkpoint(capsys, src, tmp_path, caplog):
    run = tmp_path / "run"
    T.write_model(src, run / "checkpoint-100")
    (T.write_model(src, run / "checkpoint-200") / "config.json").write_text('{"archi')
    capsys.readouterr()
    assert main(["sweep", "--dry-run", f"models.0.path={run}", f"output.dir={tmp_path / 'out'}"]) == 0
    cap = capsys.readouterr()
    assert "checkpoint-200: config.json is not valid JSON" in caplog.text   # a warning, on stderr
    assert "checkpoints: demo-rl@checkpoint-100\n" in cap.out


def test_a_name_shaped_like_a_checkpoint_but_not_a_step_is_warned_about(capsys, src, tmp_path, caplog):
    from runner.checkpoints import discover_checkpoints
    from runner.config import ModelConfig

    run = tmp_path / "run"
    T.write_model(src, run / "checkpoint-100")
    T.write_model(src, run / "checkpoint-abc")
    assert [c.name for c in discover_checkpoints(ModelConfig(name="m", path=str(run)))] == ["checkpoint-100"]
    assert caplog.text.count("checkpoint-abc: named like 'checkpoint-{step}' but 'abc' is not an integer step") == 1


def test_not_a_run_is_exit_2_with_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing"):
        capsys.readouterr()
        assert main(["checkpoints", str(path), "--json"]) == 2
        cap = capsys.readouterr()
        assert cap.out == "" and len(cap.err.strip().splitlines()) == 1 and "Traceback" not in cap.err


def test_nothing_ready_is_still_a_listing(capsys, src, tmp_path):
    run = T.verl_run(src, tmp_path / "verl", steps=(), in_progress=(5,))
    rows = listing(capsys, run)
    assert summary(rows) == [("global_step_5", 5, "full", False)]
    assert "no latest_checkpointed_iteration.txt yet" in rows[0]["reason"]


# --- explicit layouts and patterns --------------------------------------------------------


def test_explicit_pattern_unquoted_with_step_first_and_nested(capsys, src, tmp_path):
    run = tmp_path / "run"
    for s in (3, 6):
        T.write_model(src, run / f"{s}" / "export" / "hf")
    rows = listing(capsys, run, "models.0.checkpoint_layout={step}/export/hf")
    assert summary(rows) == [("3", 3, "full", True), ("6", 6, "full", True)]
    rows = listing(capsys, run, "models.0.checkpoint_pattern={step}/export/hf")
    assert summary(rows) == [("3", 3, "full", True), ("6", 6, "full", True)]


def test_explicit_layout_name_overrides_recognition(capsys, src, tmp_path):
    run = T.verl_run(src, tmp_path / "verl", in_progress=())
    rows = listing(capsys, run, "models.0.checkpoint_layout=global_step_{step}/actor/huggingface")
    assert summary(rows) == [("global_step_5", 5, "full", True), ("global_step_10", 10, "full", True)]
    capsys.readouterr()
    assert main(["checkpoints", str(run), "models.0.checkpoint_layout=torchtune"]) == 2   # the wrong trainer
    assert "torchtune run directory (layout 'torchtune' found no step directories)" in capsys.readouterr().err
    assert main(["checkpoints", str(run), "models.0.checkpoint_layout=nonsense"]) == 2
    assert "unknown layout 'nonsense'; allowed: auto, verl, skyrl" in capsys.readouterr().err


def test_demo_run_is_still_the_plain_layout(capsys, random_run):
    rows = listing(capsys, random_run)
    assert summary(rows) == [(f"checkpoint-{s}", s, "full", True) for s in (100, 200, 300)]
