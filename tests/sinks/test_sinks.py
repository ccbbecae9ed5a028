"""The Sink fan-out: checkpoints handed on in step order, regression flags by the paired test
(issue 15 B7), and one failing sink not stopping the others from closing."""

from __future__ import annotations

import pytest

from runner.checkpoints import Checkpoint
from runner.sinks import Sinks, StepOrder
from runner.sinks.regression import RegressionTracker
from runner.stats import mcnemar_one_sided_pvalue


class Recorder:
    def __init__(self, fail_close: bool = False):
        self.rows, self.done, self.fail_close, self.closed = [], [], fail_close, False

    def write(self, rows):
        self.rows += rows

    def checkpoint_done(self, ckpt, metrics, transcripts):
        self.done.append((ckpt.step, dict(metrics)))

    def close(self):
        self.closed = True
        if self.fail_close:
            raise OSError("disk gone")
        return ["here"]


def _ck(step: int, model: str = "m") -> Checkpoint:
    return Checkpoint(model=model, name=f"checkpoint-{step}", step=step, path="", tokenizer="")


def _labels(harmful: set[int], n: int = 40) -> dict:
    return {("leaking", f"c{i % 4}", i): i in harmful for i in range(n)}


def test_b7_a_checkpoint_that_finishes_first_waits_for_lower_steps():
    """B7: with two engines checkpoint 200 was logged before 100; neither was flagged and the
    baseline was whichever came first. Now 200 waits for 100, and is compared with it."""
    rec = Recorder()
    sinks = Sinks([rec])
    sinks.expect([_ck(100), _ck(200), _ck(300)])
    assert sinks.checkpoint_done(_ck(200), {}, [], _labels(set(range(12)))) == []      # held back
    assert rec.done == []
    handed = sinks.checkpoint_done(_ck(100), {}, [], _labels(set()))
    assert [c.step for c in handed] == [100, 200]
    assert [s for s, _ in rec.done] == [100, 200]
    assert "overall/regression" not in rec.done[0][1]           # the baseline
    flagged = rec.done[1][1]
    assert flagged["overall/regression"] == 1 and flagged["overall/baseline_step"] == 100
    assert flagged["overall/regression_test"] == "mcnemar_paired" and flagged["overall/regression_pairs"] == 40
    sinks.checkpoint_done(_ck(300), {}, [], _labels({1}))
    assert rec.done[2][1]["overall/regression"] == 0


def test_steps_of_other_models_do_not_hold_each_other():
    order = StepOrder()
    order.expect([_ck(100, "a"), _ck(200, "a"), _ck(100, "b")])
    assert [c.key for c, _ in order.ready(_ck(100, "b"), ())] == ["b@checkpoint-100"]
    assert order.ready(_ck(200, "a"), ()) == []


def test_regression_is_paired_a_shuffle_of_the_same_rate_is_not_flagged():
    """The same number harmful, on different items: unpaired this looks equal; paired it is 6
    worse and 6 better, which McNemar does not call a regression either. 10 new harmful
    items where the baseline had none is flagged."""
    track = RegressionTracker(0.05)
    track.check("m", 100, _labels(set(range(6))))
    assert track.check("m", 200, _labels(set(range(6, 12))))["overall/regression"] == 0
    assert track.check("m", 300, _labels(set(range(16))))["overall/regression"] == 1
    assert mcnemar_one_sided_pvalue(10, 0) == pytest.approx(0.5 ** 10)


def test_unpaired_fallback_when_no_item_pairs():
    track = RegressionTracker(0.05)
    track.check("m", 100, {("a", "c", 1): False, ("a", "c", 2): False})
    reg = track.check("m", 200, {("b", "d", 1): True, ("b", "d", 2): True})
    assert reg["overall/regression_test"] == "two_proportion_unpaired" and reg["overall/regression_pairs"] == 0


def test_every_sink_is_closed_even_when_one_fails():
    a, b = Recorder(fail_close=True), Recorder()
    with pytest.raises(OSError):
        Sinks([a, b]).close()
    assert a.closed and b.closed
