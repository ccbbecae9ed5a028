"""`runner judge-eval`: a judge measured against the hand-labelled reference set.

    runner judge-eval [CONFIG.yaml] [key=value ...] [--reference tests/data/reference_replies.yaml]

The judge is configured exactly as for a sweep (`grading.judge.model`, `.backend`, `.api`, ...):
a local vLLM model (its own engine in this process, no Ray) or an OpenAI-compatible server.
Every reference reply is judged once in its family's condition with the pack's rubric, through
the sweep's own `JudgeGrader`, and the verdicts are compared with the human labels: accuracy,
precision, recall and Cohen's kappa per family and overall (unparseable verdicts are counted as
undecided, never as "not harmful"). The rule grader's figures on the same set are printed
beside them, with how many replies the rules left to the judge (`needs_judge`).
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import ConfigError, UserError
from runner.generation.backends import BACKENDS
from runner.generation.engine import GenerationResult
from runner.generation.specs import build_api_spec, build_judge_engine_spec
from runner.graders.awareness import LABELS, AwarenessClassifier
from runner.graders.awareness_judge import AwarenessJudge, format_multiclass, multiclass_agreement
from runner.graders.judge import judge_spec, make_judge, rubric_text
from runner.graders.reference import ReferenceReply, agreement, format_agreement_table, load_reference, rule_grades
from runner.grid import SamplingParams, WorkItem
from runner.plan import resolve_judge, resolve_paths
from runner.scenarios import load_packs

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_replies.yaml"
DEFAULT_AWARENESS = Path(__file__).resolve().parents[2] / "tests" / "data" / "awareness_scratchpads.yaml"


def _judge(cfg, rubrics: dict[str, str]):
    """The sweep's own JudgeGrader on the configured judge, in this process (no Ray)."""
    judge = cfg.grading.judge
    model = resolve_judge(cfg, resolve_paths(cfg))
    if not BACKENDS[judge.backend].serves_locally:
        return make_judge(None, model, judge_spec(judge), rubrics, api=build_api_spec(judge.api, judge.max_model_len))
    device = cfg.generation.device.value if cfg.generation.device.value != "auto" else _local_device()
    if device == "cpu":  # one in-process CPU engine, as the engine actors run it
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.generation.cpu_kv_cache_gib))
    return make_judge(build_judge_engine_spec(cfg, device, model), model, judge_spec(judge), rubrics)


def _local_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _work_items(replies: list[ReferenceReply], packs: dict):
    pairs = []
    for r in replies:
        pack = packs[r.family]
        sc = pack.render(pack.condition_from_id(r.condition))
        item = WorkItem(item_id=f"ref-{r.id}", scenario=r.family, condition=sc.condition, model="reference",
                        checkpoint=r.id, checkpoint_step=0, seed=0, system=sc.system, user=sc.user,
                        sampling=SamplingParams(0.0, 1.0, 1))
        pairs.append((item, GenerationResult(item.item_id, "ok", response=r.reply)))
    return pairs


def evaluate(replies: list[ReferenceReply], predicted: dict[str, bool | None]) -> dict[str, dict]:
    """Agreement per family (sorted) and `overall`, from predictions by reply id."""
    rows = {}
    for family in sorted({r.family for r in replies}) + ["overall"]:
        rs = [r for r in replies if family in ("overall", r.family)]
        rows[family] = agreement([r.harmful for r in rs], [predicted.get(r.id) for r in rs])
    return rows


def rule_predictions(replies: list[ReferenceReply], packs: dict) -> dict[str, bool | None]:
    return {i: graded[0] for i, graded in rule_grades(replies, packs).items()}


def load_scratchpads(path: Path) -> list[dict]:
    """The labelled scratchpads (id, label, why, text); UserError on a bad file."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"awareness set {path}: cannot read it ({str(e).splitlines()[0]})") from None
    rows = data.get("scratchpads") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("label") in LABELS for r in rows):
        raise UserError(f"awareness set {path}: expected `scratchpads`, each with a label in {', '.join(LABELS)}")
    return rows


def run_awareness_eval(cfg, path: Path = DEFAULT_AWARENESS, out=print, backend=None) -> dict[str, dict]:
    """The rule classifier and the judge-based one on the labelled scratchpads."""
    rows = load_scratchpads(path)
    human = [r["label"] for r in rows]
    rules = multiclass_agreement(human, [AwarenessClassifier().classify(r["text"])[0] for r in rows])
    out(f"awareness set: {path} ({len(rows)} scratchpads)")
    out(format_multiclass("rule classifier", rules))
    if backend is None:
        backend = _judge(cfg, {}).backend
    judged = multiclass_agreement(human, AwarenessJudge(backend, judge_spec(cfg.grading.judge)).classify(
        [r["text"] for r in rows]))
    out(format_multiclass(f"judge classifier ({cfg.grading.judge.model})", judged))
    return {"rules": rules, "judge": judged}


def run_judge_eval(cfg, reference: Path = DEFAULT_REFERENCE, out=print, awareness: Path | None = None) -> dict[str, dict]:
    """Judge every reference reply, print the figures; returns the judge's rows by family."""
    replies = load_reference(reference)
    packs = {p.name: p for p in load_packs([Path(d) for d in resolve_paths(cfg).pack_dirs])}
    missing = sorted({r.family for r in replies} - set(packs))
    if missing:
        raise ConfigError(f"config error: the reference set has families without a loaded pack: {', '.join(missing)}")
    by_rules = rule_predictions(replies, packs)
    rules = evaluate(replies, by_rules)
    out(f"reference set: {reference} ({len(replies)} replies)")
    out("rule grader (undecided: left to the judge, needs_judge):\n" + format_agreement_table(rules))

    if not cfg.grading.judge.model:
        raise ConfigError("config error: runner judge-eval needs grading.judge.model (a model directory, "
                          "a builtin model, or with grading.judge.backend=openai the served model's name)")
    grader = _judge(cfg, {p.name: rubric_text(p.rubric, p.harmful_act) for p in packs.values()})
    backend = grader.backend
    judgments = grader.grade(_work_items(replies, packs))
    verdicts = {j.item_id[len("ref-"):]: j.verdict for j in judgments}
    rows = evaluate(replies, verdicts)
    out(f"judge {cfg.grading.judge.model} ({cfg.grading.judge.backend.value}) "
        f"(undecided: no parseable verdict):\n" + format_agreement_table(rows))
    combined = {r.id: verdicts[r.id] if by_rules[r.id] is None else by_rules[r.id] for r in replies}
    final = evaluate(replies, combined)["overall"]
    out(f"final labels (rules where they decide, the judge where they abstain): accuracy "
        f"{final['accuracy']:.3f}, kappa {final['kappa']:.3f} over {final['decided']} decided of {final['n']}")
    if awareness is not None:
        run_awareness_eval(cfg, awareness, out, backend=backend)
    return rows


__all__ = ["DEFAULT_AWARENESS", "DEFAULT_REFERENCE", "evaluate", "load_scratchpads", "rule_predictions",
           "run_awareness_eval", "run_judge_eval"]
