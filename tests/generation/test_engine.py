"""Generator logic with the fake backend (unit level; the real engine runs in tests/e2e)."""

from __future__ import annotations

from runner.checkpoints import Checkpoint
from runner.generation.engine import EngineSpec, Generator
from runner.generation.fake import FakeBackend
from runner.grid import SamplingParams, WorkItem

CK1 = Checkpoint("m", "ck1", 1, "/p1", "/t")
CK2 = Checkpoint("m", "ck2", 2, "/p2", "/t")


def item(i: int, user: str = "hello there") -> WorkItem:
    return WorkItem(f"id{i}", "f", "c", "m", "ck1", 1, i, "sys", user, SamplingParams(1.0, 1.0, 8))


def test_results_match_inputs_by_id_and_engine_loads_once_per_checkpoint():
    fake = FakeBackend()
    gen = Generator(fake, EngineSpec(max_model_len=100))
    out = gen.generate(CK1, [item(0), item(1)])
    out += gen.generate(CK1, [item(2)])
    assert [r.item_id for r in out] == ["id0", "id1", "id2"]
    assert all(r.status == "ok" for r in out)
    assert fake.loads == ["m@ck1"]
    gen.generate(CK2, [item(3)])
    assert fake.loads == ["m@ck1", "m@ck2"]


def test_one_failing_item_costs_one_error_row_after_bounded_retries():
    fake = FakeBackend(fail_on={"id1"})
    gen = Generator(fake, EngineSpec(max_model_len=100, max_retries=2))
    out = gen.generate(CK1, [item(0), item(1), item(2)])
    assert [r.status for r in out] == ["ok", "error", "ok"]
    assert "fake failure for id1" in out[1].error


def test_prompt_longer_than_context_is_an_error_row_not_a_crash():
    gen = Generator(FakeBackend(), EngineSpec(max_model_len=5))
    out = gen.generate(CK1, [item(0, "a b"), item(1, "a b c d e f g")])
    assert out[0].status == "ok"
    assert out[1].status == "error" and "generation.max_model_len is 5" in out[1].error


def test_batches_of_another_checkpoint_wait_for_the_loaded_one_to_finish():
    """Several threads generate at once (the actor's batches in flight): batches of the loaded
    checkpoint run together; a switch waits for them, and no batch ever runs on the wrong weights."""
    import threading
    import time

    events = []

    class SlowFake(FakeBackend):
        def complete(self, items):
            events.append(("start", self.loaded_key))
            time.sleep(0.05)
            events.append(("end", self.loaded_key))
            return super().complete(items)

        def load(self, ckpt):
            events.append(("load", ckpt.key, sum(1 for e in events if e[0] == "start")
                           - sum(1 for e in events if e[0] == "end")))
            self.loaded_key = ckpt.key
            super().load(ckpt)

    fake = SlowFake()
    gen = Generator(fake, EngineSpec(max_model_len=100))
    out = {}

    def run(name, ck):
        out[name] = (ck.key, fake_keys(gen.generate(ck, [item(0)])))

    def fake_keys(results):
        return [r.status for r in results]

    threads = [threading.Thread(target=run, args=(f"a{i}", CK1)) for i in range(3)]
    threads += [threading.Thread(target=run, args=("b", CK2))]
    threads += [threading.Thread(target=run, args=(f"c{i}", CK1)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join()
    assert all(v[1] == ["ok"] for v in out.values())
    loads = [e for e in events if e[0] == "load"]
    assert all(e[2] == 0 for e in loads), loads  # every load happened with nothing running
    # Between a load and the next one, every batch that ran used the loaded checkpoint.
    current = None
    for e in events:
        if e[0] == "load":
            current = e[1]
        else:
            assert e[1] == current
    # Three a's ran together before the switch to CK2 (not one at a time).
    assert max(sum(1 for x in events[:i] if x == ("start", "m@ck1")) - sum(1 for x in events[:i] if x == ("end", "m@ck1"))
               for i in range(len(events) + 1)) >= 2


def _adapter(name: str, base: str = "/base", rank: int = 8) -> Checkpoint:
    return Checkpoint("lora", name, int(name.split("-")[1]), base, "/t", adapter=f"/run/{name}", lora_rank=rank)


def test_adapters_of_one_base_run_side_by_side_without_a_load_between():
    """Batches of several adapters of one base model overlap on one engine: one load, no drain."""
    import threading
    import time

    running, peak = [0], [0]

    class SlowFake(FakeBackend):
        def complete(self, items):
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            time.sleep(0.1)
            running[0] -= 1
            return super().complete(items)

    fake = SlowFake()
    gen = Generator(fake, EngineSpec(max_model_len=100))
    adapters = [_adapter(f"checkpoint-{i}") for i in (1, 2, 3, 4)]
    threads = [threading.Thread(target=gen.generate, args=(a, [item(i)])) for i, a in enumerate(adapters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.loads) == 1  # the first batch to arrive loaded the base model, once
    assert sorted(fake.adapters) == sorted(a.key for a in adapters)
    assert peak[0] >= 2  # adapters' batches ran at once

    # Another base model, or a rank the engine did not reserve, is another engine: a load.
    gen.generate(_adapter("checkpoint-5", base="/other"), [item(9)])
    gen.generate(_adapter("checkpoint-6", base="/other", rank=64), [item(10)])
    assert len(fake.loads) == 3
