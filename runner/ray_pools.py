"""The Ray side: starting Ray, the generation pool (one vLLM engine per actor), the grader pool
and the judge pool (one judge engine per actor).

The driver loop keeps every engine busy (two batches queued per actor so it never waits on the
driver), sends each finished batch straight to a rule grader and then to a judge (grading
overlaps generation), and hands graded batches to the sinks. Outputs are matched to inputs by
item_id.

Failures: an actor whose engine dies is restarted by Ray (`max_restarts`) and its batch is
resubmitted, at most `generation.max_retries` times; after that the batch's items become
`error` rows and the sweep goes on.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from typing import Callable

from runner.checkpoints import Checkpoint
from runner.config import GenerationConfig, JudgeConfig, RayConfig
from runner.errors import ConfigError, StartupError
from runner.generation.engine import EngineSpec, GenerationResult
from runner.generation.openai_backend import ApiSpec
from runner.generation.scheduler import Batch, BatchScheduler
from runner.graders.judge import JudgeSpec, Judgment
from runner.graders.rules import Grading

log = logging.getLogger(__name__)

ACTOR_RESTARTS = 3
QUEUE_DEPTH = 2
# CPUs an API-backed actor reserves: none. It only waits on HTTP; reserving even a fraction
# would leave it unplaceable when the auto-sized generation pool has taken every core.
API_ACTOR_CPUS = 0


def init_ray(cfg: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=cfg.log_to_driver)
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, **kwargs)


def _cpu_env(index: int, threads: int, kv_gib: int, first_core: int = 0) -> dict[str, str]:
    # Bind each engine's OpenMP threads to its own cores so two engines never fight over one.
    ncpu = os.cpu_count() or 1
    first = (first_core + index * threads) % ncpu
    cores = [(first + k) % ncpu for k in range(threads)]
    return {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",   # engine in the actor's own process: far faster start on CPU
        "VLLM_CPU_KVCACHE_SPACE": str(kv_gib),
        "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)),
        "OMP_NUM_THREADS": str(threads),
    }


class GenerationPool:
    def __init__(self, spec: EngineSpec, cfg: GenerationConfig, reserved: int = 0,
                 api_specs: dict[str, ApiSpec] | None = None, api_only: bool = False):
        """`reserved`: CPUs (on CPU) or GPUs (on CUDA) other engines (the judge's) take from the
        cluster; the auto actor count leaves them free. `api_specs`: model name -> server, for
        models served over an OpenAI-compatible API; `api_only`: every model is, so the actors
        hold no engine (no GPU, no bound cores; auto count 1, its concurrency is the API's)."""
        import ray

        from runner.generation.actor import GenerationActor

        remote_cls = ray.remote(GenerationActor)
        if api_only:
            n = cfg.num_actors or 1
            self.actors = [remote_cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=0, num_cpus=API_ACTOR_CPUS,
                                              num_gpus=0, runtime_env={"env_vars": _passthrough_env()})
                           .remote(spec, api_specs) for _ in range(n)]
            self.size = n
            self.max_retries = cfg.max_retries
            _wait_ready(self.actors, "generation")
            return
        cpu = spec.device == "cpu"
        unit, per, key = ("CPU", cfg.cpu_threads_per_actor, "cpu_threads_per_actor") if cpu else \
            ("GPU", spec.tensor_parallel_size, "tensor_parallel_size")
        have = int(ray.cluster_resources().get(unit, 0))
        n = cfg.num_actors or max(1, (have - reserved) // per)
        if n * per + reserved > have:
            judge = f" plus {reserved} for the judge (grading.judge)" if reserved else ""
            raise ConfigError(f"config error: generation.num_actors={n} x {key}={per} needs {n * per} "
                              f"{unit}s{judge}; the Ray cluster has {have}")
        if cpu:
            opts = [dict(num_cpus=per, num_gpus=0, runtime_env={"env_vars": {
                **_cpu_env(i, per, spec.cpu_kv_cache_gib), **_passthrough_env()}}) for i in range(n)]
        else:
            opts = [dict(num_cpus=1, num_gpus=per, runtime_env={"env_vars": _passthrough_env()}) for _ in range(n)]
        self.actors = [remote_cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=0, **o).remote(spec, api_specs)
                       for o in opts]
        self.size = n
        self.max_retries = cfg.max_retries
        _wait_ready(self.actors, "generation")

    def run(self, scheduler: BatchScheduler, graders: "GraderPool",
            on_graded: Callable[[Batch, list[GenerationResult], list[Grading], list[Judgment] | None], None],
            on_progress: Callable[[], None], skipped: Callable[[int], None],
            judges: "JudgePool | None" = None) -> dict:
        """Generate every batch, grade it by rules, then by the judge (if any), then `on_graded`."""
        import ray
        from ray.exceptions import RayError

        n = len(self.actors)
        loaded: list[str | None] = [None] * n
        inflight = [0] * n
        failures = [0] * n
        gen_refs: dict = {}
        grade_refs: dict = {}
        judge_refs: dict = {}
        stats = {"generation_seconds": 0.0, "output_tokens": 0, "load_seconds": 0.0, "batch_failures": 0, "fallbacks": 0}
        seen_skipped = 0
        engine_counts: dict[int, dict] = {}

        def alive() -> list[int]:
            return [i for i in range(n) if failures[i] <= ACTOR_RESTARTS]

        def fill() -> None:
            for i in alive():
                while inflight[i] < QUEUE_DEPTH:
                    b = scheduler.next_batch(loaded[i])
                    if b is None:
                        return
                    ref = self.actors[i].generate.remote(b.ckpt, b.items)
                    loaded[i] = b.ckpt.key
                    inflight[i] += 1
                    gen_refs[ref] = (i, b)

        def fail_batch(b: Batch, why: str) -> None:
            results = [GenerationResult(it.item_id, "error", error=why) for it in b.items]
            grade_refs[graders.submit(b.items, results)] = (b, results)

        while True:
            if not alive():
                # Every engine is gone for good: the rest of the grid becomes error rows.
                while (b := scheduler.next_batch(None)) is not None:
                    fail_batch(b, "no generation engine left: every actor died")
            else:
                fill()
            if scheduler.skipped != seen_skipped:
                skipped(scheduler.skipped - seen_skipped)
                seen_skipped = scheduler.skipped
            on_progress()
            if not gen_refs and not grade_refs and not judge_refs:
                if scheduler.all_done():
                    break
                continue
            ready, _ = ray.wait(list(gen_refs) + list(grade_refs) + list(judge_refs), num_returns=1)
            for ref in ready:
                if ref in gen_refs:
                    i, b = gen_refs.pop(ref)
                    inflight[i] -= 1
                    try:
                        results, st = ray.get(ref)
                    except RayError as e:
                        failures[i] += 1
                        stats["batch_failures"] += 1
                        loaded[i] = None  # a restarted actor starts with no engine
                        why = _reason(e)
                        log.warning("generation batch failed on actor %d (attempt %d): %s", i, b.attempt + 1, why)
                        if b.attempt < self.max_retries:
                            scheduler.retry(b)
                        else:
                            fail_batch(b, f"gave up after {b.attempt + 1} attempts: {why}")
                        continue
                    failures[i] = 0
                    stats["generation_seconds"] += st["seconds"]
                    stats["output_tokens"] += st["output_tokens"]
                    stats["load_seconds"] += st["load_seconds"]
                    stats["fallbacks"] += st["fallbacks"]
                    engine_counts[i] = st["engine"]
                    grade_refs[graders.submit(b.items, results)] = (b, results)
                elif ref in grade_refs:
                    b, results = grade_refs.pop(ref)
                    try:
                        gradings = ray.get(ref)
                    except RayError as e:
                        # Never lose a generated reply: keep it, unscored, with the reason.
                        why = f"grader failed: {_reason(e)}"
                        gradings = [Grading(r.item_id, "rules", None, why, "[]", "[]") for r in results]
                    if judges is not None:
                        judge_refs[judges.submit(b.items, results)] = (b, results, gradings)
                        continue
                    on_graded(b, results, gradings, None)
                    scheduler.finished(b)
                else:
                    b, results, gradings = judge_refs.pop(ref)
                    try:
                        judgments = ray.get(ref)
                    except RayError as e:
                        why = f"judge failed: {_reason(e)}"
                        judgments = [Judgment(it.item_id, None, None, 0, why, judges.model, None) for it in b.items]
                    on_graded(b, results, gradings, judgments)
                    scheduler.finished(b)
        stats["engine"] = {k: sum(c.get(k, 0) for c in engine_counts.values())
                           for k in ("fresh", "swap", "swap_verified", "swap_rejected", "adapter")}
        return stats

    def shutdown(self) -> None:
        _kill_all(self.actors)


class GraderPool:
    def __init__(self, num_actors: int, pack_dirs: list[str], families: list[str], where: dict[str, list[str]]):
        import ray

        from runner.graders.actor import GraderActor

        remote_cls = ray.remote(GraderActor)
        # Rule grading is light: it reserves no CPU, so it never waits for an engine's core.
        self.actors = [remote_cls.options(num_cpus=0, max_restarts=ACTOR_RESTARTS, max_task_retries=2)
                       .remote(pack_dirs, families, where) for _ in range(num_actors)]
        self.size = num_actors
        self._turn = itertools.cycle(self.actors)  # round robin
        _wait_ready(self.actors, "grader")

    def submit(self, items, results):
        return next(self._turn).grade.remote(list(zip(items, results)))

    def shutdown(self) -> None:
        _kill_all(self.actors)


class JudgePool:
    """Judge engines: their own actors and resources (CPU cores bound apart from generation's)."""

    def __init__(self, cfg: JudgeConfig, engine: EngineSpec, judge_model: Checkpoint, spec: JudgeSpec,
                 rubrics: dict[str, str], first_core: int = 0, api: ApiSpec | None = None):
        """`api`: the judge is served by an OpenAI-compatible server; its actors hold no engine."""
        import ray

        from runner.graders.judge_actor import JudgeActor

        if api is not None:
            opts = [dict(num_cpus=API_ACTOR_CPUS, num_gpus=0, runtime_env={"env_vars": _passthrough_env()})
                    for _ in range(cfg.num_actors)]
        elif engine.device == "cpu":
            per = cfg.cpu_threads_per_actor
            # Cores after the generation engines' (first_core), so no two engines share one.
            opts = [dict(num_cpus=per, num_gpus=0, runtime_env={"env_vars": {
                **_cpu_env(i, per, engine.cpu_kv_cache_gib, first_core), **_passthrough_env()}})
                for i in range(cfg.num_actors)]
        else:
            opts = [dict(num_cpus=1, num_gpus=cfg.num_gpus_per_actor, runtime_env={"env_vars": _passthrough_env()})
                    for _ in range(cfg.num_actors)]
        remote_cls = ray.remote(JudgeActor)
        self.actors = [remote_cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=1, **o)
                       .remote(engine, judge_model, spec, rubrics, api) for o in opts]
        self.size = cfg.num_actors
        self.model = spec.model
        self._turn = itertools.cycle(self.actors)  # round robin
        _wait_ready(self.actors, "judge")

    def submit(self, items, results):
        return next(self._turn).judge_batch.remote(list(zip(items, results)))

    def shutdown(self) -> None:
        _kill_all(self.actors)


def _reason(e: BaseException) -> str:
    """A Ray error as the one line stored in a row's error or unscored_reason: the error raised
    inside the actor (the first line of a RayTaskError only names the task and its pid)."""
    return f"{type(e).__name__}: {_root_cause(e)}"


def _kill_all(actors) -> None:
    import ray

    for a in actors:
        ray.kill(a, no_restart=True)


def _wait_ready(actors, what: str, timeout_s: float = 300) -> None:
    """Fail clearly, instead of hanging, when Ray cannot place the actors."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        ray.get([a.ping.remote() for a in actors], timeout=timeout_s)
    except GetTimeoutError:
        raise ConfigError(f"config error: the {what} actors did not start within {timeout_s:.0f}s; the Ray "
                          f"cluster lacks the resources they ask for ({ray.available_resources()} free)") from None
    except RayActorError as e:
        _kill_all(actors)
        raise StartupError(f"the {what} actors failed to start: {_root_cause(e)} "
                           f"(full log: ray.log_to_driver=true, or Ray's session logs)") from None


def _root_cause(e: BaseException) -> str:
    """The innermost `SomeError: message` of a Ray error's text, with the indented lines that
    continue it (pydantic puts the reason there), on one line; its first line if none."""
    lines = str(e).splitlines()
    starts = [i for i, ln in enumerate(lines) if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", ln)]
    if not starts:
        return (lines[0] if lines else type(e).__name__)[:500]
    cause = [lines[starts[-1]].strip()]
    for ln in lines[starts[-1] + 1:]:
        if not ln.startswith((" ", "\t")) or not ln.strip():
            break
        cause.append(ln.strip())
    return " ".join(cause)[:500]


def _passthrough_env() -> dict[str, str]:
    env = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
           "TOKENIZERS_PARALLELISM": "false"}
    return env
