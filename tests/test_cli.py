"""The command line's habits (issue 20): help with examples, --version, -v anywhere, --limit,
`runner config`, a --dry-run that says what is new, a live bar only on a terminal."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.bench.driver import build_fake_run
from runner.cli import build_parser, main
from runner.sinks.console import ConsoleProgress
from runner.sinks.parquet import ParquetSink

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["sweep", "watch", "grade", "report", "checkpoints", "config", "judge-eval", "validate", "submit", "jobs",
            "stop"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_has_a_description_and_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"runner {command}" in text.split("examples:")[1]


def test_version_and_verbose_anywhere(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("runner (misalign-runner) ")
    p = build_parser()
    assert p.parse_args(["-v", "validate"]).verbose and p.parse_args(["validate", "-v"]).verbose
    assert not getattr(p.parse_args(["validate"]), "verbose", False)


def test_config_prints_the_resolved_yaml(capsys):
    assert main(["config", "sampling.seeds=3"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["sampling"]["seeds"] == 3 and resolved["models"][0]["path"] == "builtin:demo-rl"
    assert main(["config", "sampling.nope=1"]) == 2


def _args(run: Path, out: Path) -> list[str]:
    return ["models.0.name=fake", f"models.0.path={run}", "scenarios.families=[blackmail]", "sampling.seeds=2",
            f"output.dir={out}", "wandb.mode=disabled"]


def test_dry_run_says_new_vs_done_output_wandb_and_engines(tmp_path, capsys):
    run, out = build_fake_run(tmp_path / "run", 2), tmp_path / "out"
    assert main(["sweep", "--dry-run", "--limit", "5", *_args(run, out)]) == 0
    text = capsys.readouterr().out
    assert "5 items (--limit 5) = 2 checkpoint(s) x" in text and "new: 5, already ok: 0" in text
    assert f"output: {out}" in text and "W&B mode: disabled" in text and "generation engines" in text
    from runner.config import load_config
    from runner.plan import plan_sweep

    first3 = list(plan_sweep(load_config(None, _args(run, out)), limit=3).grid_ids())
    ParquetSink(out, "earlier").write([{"run_id": "earlier", "item_id": i, "scenario": "blackmail", "status": "ok",
                                        "schema_version": 1} for i in first3])
    assert main(["sweep", "--dry-run", "--limit", "5", *_args(run, out)]) == 0
    assert "new: 2, already ok: 3" in capsys.readouterr().out


def test_limit_is_the_first_n_items_of_the_grid_every_time(tmp_path):
    from runner.config import load_config
    from runner.plan import plan_sweep

    run = build_fake_run(tmp_path / "run", 2)
    cfg = load_config(None, _args(run, tmp_path / "out"))
    full = list(plan_sweep(cfg).grid_ids())
    limited = plan_sweep(cfg, limit=7)
    assert list(limited.grid_ids()) == full[:7] and limited.total_items == 7
    assert sum(1 for _, items in limited.grid(limited.checkpoints) for _ in items) == 7
    assert main(["sweep", "--limit", "0", *_args(run, tmp_path / "out")]) == 2


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_live_bar_on_a_terminal_and_plain_lines_otherwise():
    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        p = ConsoleProgress(10, 0, stream=stream, every_s=0)
        p.update(5, force=True)
        p.message("checkpoint done")
        p.update(5)
    assert "\r" in tty.getvalue() and "[###############" in tty.getvalue()
    assert "\r" not in plain.getvalue() and plain.getvalue().count("\n") == 3


def test_help_does_not_import_vllm_or_ray():
    code = "import sys; from runner.cli import main\ntry: main(['sweep', '--help'])\nexcept SystemExit: pass\n" \
           "print('vllm' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False False"
