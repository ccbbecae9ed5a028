"""Ray plumbing shared by every stage: starting Ray, core binding, readiness, error text."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading

from runner.config import RayConfig
from runner.errors import ConfigError, StartupError

log = logging.getLogger(__name__)

# Ray restarts an actor whose process died (an engine that failed, a lost node) this many times.
ACTOR_RESTARTS = 3


class _TokenAuthNotice(logging.Filter):
    """Ray warns at every local start whether token auth is on or off. For the runner's own
    local cluster that is noise on the console: the notice is kept at INFO (`-v` shows it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "Token authentication is" in record.getMessage():
            log.info("ray: %s", record.getMessage())
            return False
        return True


def init_ray(cfg: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_TokenAuthNotice())
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=cfg.log_to_driver)
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    main = threading.current_thread() is threading.main_thread()
    ours = signal.getsignal(signal.SIGTERM) if main else None
    if address:
        ray.init(address=address, **kwargs)
    else:
        from runner.pipeline.reaper import start_reaper

        # Ray's agents outlive a SIGKILLed driver by a minute; the reaper stops them at once.
        start_reaper()
        ray.init(num_cpus=cfg.num_cpus, **kwargs)
    if callable(ours):
        # ray.init replaces SIGTERM's handler with its own (sys.exit). The CLI's makes SIGTERM
        # stop a run the way Ctrl-C does (finished batches kept, actors and W&B closed): keep it.
        signal.signal(signal.SIGTERM, ours)


def kill_all(actors) -> None:
    import ray

    for a in actors:
        ray.kill(a, no_restart=True)


def wait_ready(actors, what: str, timeout_s: float = 300) -> list[dict]:
    """Each actor's `ping()` (pid, node); fails clearly, instead of hanging, when Ray cannot
    place the actors or they fail to start."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        return ray.get([a.ping.remote() for a in actors], timeout=timeout_s)
    except GetTimeoutError:
        kill_all(actors)
        raise ConfigError(f"config error: the {what} actors did not start within {timeout_s:.0f}s; the Ray "
                          f"cluster lacks the resources they ask for ({ray.available_resources()} free)") from None
    except RayActorError as e:
        kill_all(actors)
        raise StartupError(f"the {what} actors failed to start: {root_cause(e)} "
                           f"(full log: ray.log_to_driver=true, or Ray's session logs)") from None


def reason(e: BaseException) -> str:
    """A Ray error as the one line stored in a row's error or unscored_reason: the error raised
    inside the actor (the first line of a RayTaskError only names the task and its pid)."""
    return f"{type(e).__name__}: {root_cause(e)}"


def root_cause(e: BaseException) -> str:
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
