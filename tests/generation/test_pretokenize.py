"""Prompts tokenized before the engine's actor (runner/generation/pretokenize.py), with a fake tokenizer;
the real tokenizer against the engine's own render is in test_prefix_sharing_e2e.py."""

from __future__ import annotations

from runner.checkpoints import Checkpoint
from runner.generation.engine import EngineSpec, Generator
from runner.generation.fake import FakeBackend
from runner.generation.pretokenize import PromptTokenizer
from runner.grid import SamplingParams, WorkItem


class WordTokenizer:
    calls = 0

    def apply_chat_template(self, messages, add_generation_prompt, tokenize, tools=None):
        WordTokenizer.calls += 1
        if "reject" in messages[1]["content"]:
            raise ValueError("template rejects this prompt")
        return [len(w) for m in messages for w in m["content"].split()] + ([99] if tools else [])


def _item(i: int, user: str) -> WorkItem:
    return WorkItem(f"id{i}", "f", user, "m", "ck", 1, i, "sys", user, SamplingParams(1.0, 1.0, 8))


def test_each_condition_is_rendered_once_and_failures_are_left_to_the_engine(tmp_path):
    ckpt = Checkpoint("m", "ck", 1, str(tmp_path), str(tmp_path))
    pre = PromptTokenizer(lambda c: True, load=lambda path: WordTokenizer())
    items = [_item(i, "hello there") for i in range(3)] + [_item(3, "reject me")]
    out = pre.prepare(ckpt, items)
    assert [it.prompt_ids for it in out] == [(3, 5, 5), (3, 5, 5), (3, 5, 5), ()]
    assert out[0] == items[0]  # the same item: ids are not identity
    assert pre.rendered == 1 and WordTokenizer.calls == 2


def test_api_models_and_remote_tokenizers_are_not_tokenized_here(tmp_path):
    pre = PromptTokenizer(lambda c: c.model == "local", load=lambda path: WordTokenizer())
    api = Checkpoint("api", "x", 0, "x", str(tmp_path))
    remote = Checkpoint("local", "y", 0, "s3://b/y", "s3://b/y/tokenizer")
    for ck in (api, remote):
        assert pre.prepare(ck, [_item(0, "hi")])[0].prompt_ids == ()


def test_the_generator_checks_length_on_the_ids_it_was_given():
    gen = Generator(FakeBackend(), EngineSpec(max_model_len=4))
    from dataclasses import replace

    ok, long = replace(_item(0, "a"), prompt_ids=(1, 2, 3)), replace(_item(1, "a"), prompt_ids=(1, 2, 3, 4, 5))
    out = gen.generate(Checkpoint("m", "ck", 1, "/p", "/t"), [ok, long])
    assert out[0].status == "ok"
    assert out[1].status == "error" and "prompt is 5 tokens" in out[1].error
