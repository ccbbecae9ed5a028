"""Discovery over a run directory in S3: a local moto server on 127.0.0.1, the trainer's files
uploaded one by one (as a trainer syncing to S3 writes them), credentials from the environment."""

from __future__ import annotations

from pathlib import Path

from runner.checkpoints import discover_checkpoints, list_checkpoints, localize_checkpoint
from runner.config import ModelConfig
from tests.checkpoints import trainer_runs as T
from tests.checkpoints.conftest import BUCKET
from tests.checkpoints.conftest import upload as _upload


def test_verl_run_in_s3_becomes_ready_as_the_trainer_writes_it(s3, random_run, tmp_path):
    client, query = s3
    src = random_run / "checkpoint-100"
    local = T.verl_run(src, tmp_path / "verl", steps=(5, 10), in_progress=())
    uri = f"s3://{BUCKET}/verl?{query}"
    model = ModelConfig(name="v", path=uri)
    # step 5 complete and recorded in "latest"; step 10's files uploaded, "latest" not yet moved on
    (local / "latest_checkpointed_iteration.txt").write_text("5")
    _upload(client, local, "verl")
    rows = [s.as_json() for s in list_checkpoints(model).statuses]
    assert [(r["name"], r["ready"]) for r in rows] == [("global_step_5", True), ("global_step_10", False)]
    assert rows[0]["model_dir"] == f"s3://{BUCKET}/verl/global_step_5/actor/huggingface?{query}"
    assert "not yet in latest_checkpointed_iteration.txt (it holds 5)" in rows[1]["reason"]
    client.put_object(Bucket=BUCKET, Key="verl/latest_checkpointed_iteration.txt", Body=b"10")
    cks = discover_checkpoints(model)
    assert [c.name for c in cks] == ["global_step_5", "global_step_10"]
    # the engine's copy: the nested HF directory only, whole
    local_ck = localize_checkpoint(cks[1], tmp_path / "cache")
    assert (Path(local_ck.path) / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert local_ck.tokenizer == local_ck.path


def test_trl_checkpoint_in_s3_waits_for_trainer_state(s3, random_run, tmp_path):
    client, query = s3
    local = T.trl_run(random_run / "checkpoint-100", tmp_path / "trl", steps=(2,), in_progress=(), final_step=None)
    model = ModelConfig(name="t", path=f"s3://{BUCKET}/trl?{query}")
    _upload(client, local, "trl", only=lambda rel: not rel.endswith("trainer_state.json"))
    (status,) = list_checkpoints(model).statuses
    assert not status.ready and "no trainer_state.json yet" in status.reason
    _upload(client, local, "trl", only=lambda rel: rel.endswith("trainer_state.json"))
    (ck,) = discover_checkpoints(model)
    assert ck.name == "checkpoint-2" and ck.step == 2
