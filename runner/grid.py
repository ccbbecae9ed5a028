"""The grid: scenario condition x model checkpoint x sample seed, expanded lazily.

Each WorkItem is plain data with a stable `item_id`: a content hash of everything that decides
the sample (rendered prompt, sampling parameters, checkpoint identity, seed). Two sweeps that
would produce the same sample produce the same id, which is how resume skips finished work.

The engine's per-request seed (`WorkItem.engine_seed`) is derived from the rendered prompt and
the sample seed, not the sample seed itself: with a shared seed every condition would draw the
same random stream, so conditions on which a model behaves alike would give identical samples
and the rate's effective sample size would shrink to the number of seeds. Derived seeds keep
samples of different conditions independent, and the same across checkpoints, so checkpoints
are compared on common random numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

from runner.checkpoints import Checkpoint
from runner.config import SamplingConfig
from runner.scenarios import ScenarioPack


@dataclass(frozen=True)
class SamplingParams:
    """The per-request sampling parameters (the seed is per item)."""

    temperature: float
    top_p: float
    max_tokens: int

    @classmethod
    def from_config(cls, cfg: SamplingConfig) -> "SamplingParams":
        return cls(cfg.temperature, cfg.top_p, cfg.max_tokens)


@dataclass(frozen=True)
class WorkItem:
    item_id: str
    scenario: str        # family (pack name)
    condition: str       # readable id of the variable combination
    model: str
    checkpoint: str
    checkpoint_step: int
    seed: int
    system: str
    user: str
    sampling: SamplingParams
    # The pack's tools as OpenAI function declarations, JSON text ("" = none): passed to the
    # chat template (`tools=`) and to APIs. Not part of item_id or equality: the system
    # prompt's tool documentation (`tools_block`) is rendered from the same declarations.
    tools: str = field(default="", compare=False)
    # Adaptive seeds: the rule and round that drew this seed (runner/pipeline/adaptive.py); "" = fixed seeds.
    seed_rule: str = field(default="", compare=False)
    # The prompt's chat-template token ids, when rendered before the engine's actor (generation/
    # pretokenize.py); () = the engine renders it. Not identity: the same prompt, rendered.
    prompt_ids: tuple = field(default=(), compare=False, repr=False)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def tool_list(self) -> list[dict] | None:
        return json.loads(self.tools) if self.tools else None

    @property
    def engine_seed(self) -> int:
        """The seed the engine samples this request with (see the module docstring)."""
        return derive_engine_seed(self.system, self.user, self.seed)


# Part of every item_id: bump when the way a sample is drawn from the same inputs changes.
SEED_SCHEME = 2


def prompt_digest(system: str, user: str) -> str:
    """Identifies the rendered prompt a reply was generated from (`runner grade` checks it)."""
    return hashlib.sha256(json.dumps([system, user], ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


def derive_engine_seed(system: str, user: str, seed: int) -> int:
    digest = hashlib.sha256(json.dumps([system, user, seed], ensure_ascii=False).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _id_fields(system: str, user: str, sampling: SamplingParams, ckpt: Checkpoint, seed_scheme: int) -> dict:
    """Everything in an item_id but the seed."""
    fields = {"system": system, "user": user, "sampling": asdict(sampling),
              "model": ckpt.model, "checkpoint": ckpt.name, "step": ckpt.step}
    if seed_scheme != 1:  # scheme 1 (the bare seed) predates the key; its ids stay as they were
        fields["seed_scheme"] = seed_scheme
    if ckpt.adapter:  # a LoRA checkpoint: the adapter is `checkpoint`; the base model decides too
        fields["lora_base_model"] = ckpt.path
    return fields


def make_item_id(system: str, user: str, sampling: SamplingParams, ckpt: Checkpoint, seed: int,
                 seed_scheme: int = SEED_SCHEME) -> str:
    """The item_id: a hash of the JSON of every field, keys sorted. This is the definition;
    `item_id_hasher` computes the same ids faster for many seeds."""
    fields = {**_id_fields(system, user, sampling, ckpt, seed_scheme), "seed": seed}
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def item_id_hasher(system: str, user: str, sampling: SamplingParams, ckpt: Checkpoint,
                   seed_scheme: int = SEED_SCHEME) -> Callable[[int], str]:
    """`seed -> make_item_id(system, user, sampling, ckpt, seed, seed_scheme)`, with the JSON
    encoded once: a million-item grid would otherwise spend most of its time re-encoding the
    same prompt. With keys sorted, "seed" sits between "sampling" and "seed_scheme", so the
    payload is a fixed head, the seed's digits, and a fixed tail (the prompt); the head is
    hashed once and each seed costs one hash of the tail."""
    fields = _id_fields(system, user, sampling, ckpt, seed_scheme)
    before = {k: v for k, v in fields.items() if k < "seed"}   # checkpoint, lora_base_model, model, sampling
    after = {k: v for k, v in fields.items() if k > "seed"}    # seed_scheme, step, system, user
    head = json.dumps(before, sort_keys=True, ensure_ascii=False)[:-1] + ', "seed": '
    tail = (", " + json.dumps(after, sort_keys=True, ensure_ascii=False)[1:]).encode("utf-8")
    base = hashlib.sha256(head.encode("utf-8"))

    def item_id(seed: int) -> str:
        h = base.copy()
        h.update(b"%d" % seed)  # json.dumps of an int is its decimal digits
        h.update(tail)
        return h.hexdigest()[:32]

    return item_id


def count_items(packs: list[ScenarioPack], where: dict[str, list[str]], checkpoints: list[Checkpoint], n_seeds: int) -> int:
    n_conditions = sum(sum(1 for _ in p.conditions(where)) for p in packs)
    return n_conditions * len(checkpoints) * n_seeds


def expand_grid(
    packs: list[ScenarioPack],
    where: dict[str, list[str]],
    checkpoints: Iterable[Checkpoint],
    sampling: SamplingConfig,
    rendered: dict | None = None,
) -> Iterator[WorkItem]:
    """Yield items grouped by checkpoint (so an engine finishes one set of weights at a time).

    Each condition is rendered once into `rendered` (pass the same dict across calls to share
    it, as SweepPlan does); the grid itself is never materialised.
    """
    params = SamplingParams.from_config(sampling)
    seeds = range(sampling.seed_start, sampling.seed_start + sampling.seeds)
    rendered = {} if rendered is None else rendered
    tools = {pack.name: json.dumps(pack.tool_schemas()) for pack in packs}
    for ckpt in checkpoints:
        for family, condition, sc in _rendered_conditions(packs, where, rendered):
            item_id = item_id_hasher(sc.system, sc.user, params, ckpt)
            for seed in seeds:
                yield WorkItem(item_id(seed), family, condition, ckpt.model, ckpt.name, ckpt.step, seed,
                               sc.system, sc.user, params, tools=tools[family])


def grid_item_ids(
    packs: list[ScenarioPack],
    where: dict[str, list[str]],
    checkpoints: Iterable[Checkpoint],
    sampling: SamplingConfig,
    rendered: dict | None = None,
) -> Iterator[str]:
    """The item_ids of `expand_grid`, in its order, without building the items: what the resume
    check needs (is anything left to do?)."""
    params = SamplingParams.from_config(sampling)
    seeds = range(sampling.seed_start, sampling.seed_start + sampling.seeds)
    rendered = {} if rendered is None else rendered
    for ckpt in checkpoints:
        for _, _, sc in _rendered_conditions(packs, where, rendered):
            yield from map(item_id_hasher(sc.system, sc.user, params, ckpt), seeds)


def _rendered_conditions(packs: list[ScenarioPack], where: dict[str, list[str]], rendered: dict):
    """(family, condition id, RenderedScenario) for every selected condition, each rendered once
    into `rendered` (keyed by (family, condition id))."""
    for pack in packs:
        for cond in pack.conditions(where):
            cid = cond.id
            sc = rendered.get((pack.name, cid))
            if sc is None:
                sc = rendered[(pack.name, cid)] = pack.render(cond)
            yield pack.name, cid, sc
