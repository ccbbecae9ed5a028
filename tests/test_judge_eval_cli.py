"""`runner judge-eval` bad input: one line on stderr, exit 2, before any engine starts."""

from __future__ import annotations

from runner.cli import main


def test_judge_eval_needs_a_judge_model(capsys):
    assert main(["judge-eval", "wandb.mode=disabled"]) == 2
    err = capsys.readouterr().err.strip()
    assert "grading.judge.model" in err and len(err.splitlines()) == 1


def test_judge_eval_rejects_a_bad_reference_file(tmp_path, capsys):
    bad = tmp_path / "ref.yaml"
    bad.write_text("replies:\n- {id: x1, family: leaking, label: maybe, text: hi}\n")
    assert main(["judge-eval", "grading.judge.model=builtin:demo-rl", "--reference", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "label must be harmful or not_harmful" in err and len(err.splitlines()) == 1
