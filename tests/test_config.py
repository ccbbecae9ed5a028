"""Bad input ends with exit status 2, one clear message naming the key, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.config import SweepConfig, WandbMode, load_config
from runner.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


def test_defaults_load_and_validate(tmp_path):
    cfg = load_config(None, [f"output.dir={tmp_path / 'out'}"])
    assert isinstance(cfg, SweepConfig)
    assert cfg.models[0].path == "builtin:demo-rl"
    assert cfg.wandb.mode == WandbMode.auto


def test_overrides_apply_with_types(tmp_path):
    cfg = load_config(None, ["sampling.seeds=8", "generation.device=cpu", "models.0.name=x",
                             "scenarios.where={urgency: [replacement]}", f"output.dir={tmp_path}"])
    assert cfg.sampling.seeds == 8
    assert cfg.generation.device.value == "cpu"
    assert cfg.models[0].name == "x"
    assert cfg.scenarios.where == {"urgency": ["replacement"]}  # replaces the default, no merge
    assert load_config(None, ["scenarios.where={}", f"output.dir={tmp_path}"]).scenarios.where == {}


@pytest.mark.parametrize("args, needle", [
    (["sweep", "does/not/exist.yaml"], "config file not found: does/not/exist.yaml"),
    (["sweep", "sampling.seedz=3"], "unknown key 'sampling.seedz' in SamplingConfig; allowed keys: seeds"),
    (["sweep", "nonsense.key=1"], "unknown key 'nonsense'"),
    (["sweep", "sampling.seeds=many"], "bad value for 'sampling.seeds'"),
    (["sweep", "generation.device=gpu"], "expected one of [auto, cpu, cuda]"),
    (["sweep", "wandb.mode=loud"], "expected one of [auto, online, offline, disabled]"),
    (["sweep", "sampling.seeds"], "bad override 'sampling.seeds': expected key=value"),
    (["sweep", "sampling.seeds=[1"], "bad override 'sampling.seeds=[1': value is not valid YAML"),
    (["sweep", "sampling.seeds=0"], "sampling.seeds must be >= 1 (got 0)"),
    (["sweep", "models=[{name: a, path: /x}, {name: a, path: /y}]"], "name 'a' is used twice"),
    (["sweep", "models.0.checkpoint_pattern=ckpt"], "must contain '{step}'"),
    (["sweep", "models.0.path=s3://AKIAX:SECRET@bucket/run"], "models[0].path must not hold credentials"),
    (["sweep", "models.0.base_model=gs://b/base?secret_key=xyz", "models.0.path=/x"],
     "models[0].base_model must not hold credentials"),
    (["sweep", "models.0.max_lora_rank=8"], "max_lora_rank applies to LoRA adapters only"),
    (["sweep", "models.0.backend=openai", "models.0.base_model=/base"], "base_model (LoRA) needs the vllm backend"),
])
def test_bad_input_exits_2_with_one_message(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(args, capsys)
    assert code == 2
    assert needle in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written (not even results/)


def test_unparsable_yaml_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  seeds: [1, 2\n")
    code, err = run_cli(["sweep", str(bad), f"output.dir={tmp_path / 'out'}"], capsys)
    assert code == 2 and "is not valid YAML (line" in err
    assert not (tmp_path / "out").exists()


def test_yaml_that_is_not_a_mapping(tmp_path, capsys):
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    code, err = run_cli(["sweep", str(bad)], capsys)
    assert code == 2 and "must hold a mapping of keys, not list" in err


def test_unknown_key_in_file_names_the_nested_type(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("models:\n  - name: m\n    patj: /x\n")
    code, err = run_cli(["sweep", str(bad)], capsys)
    assert code == 2 and "unknown key 'patj' in ModelConfig; allowed keys: name, path" in err


def test_missing_required_value(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("models:\n  - name: m\n")
    with pytest.raises(ConfigError, match="missing required value 'models\\[0\\].path'"):
        load_config(bad, [])


def test_output_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "results"
    f.write_text("not a dir")
    code, err = run_cli(["sweep", f"output.dir={f}"], capsys)
    assert code == 2 and "exists and is not a directory" in err
    assert f.read_text() == "not a dir"


def test_output_dir_that_cannot_be_created(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = run_cli(["sweep", f"output.dir={f}/sub/dir"], capsys)
    assert code == 2 and "cannot be created" in err and "is a file" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_dir_not_writable(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, err = run_cli(["sweep", f"output.dir={ro}/x"], capsys)
    assert code == 2 and "not writable" in err


def test_several_value_problems_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["sampling.seeds=0", "sampling.max_tokens=0", "generation.batch_size=0",
                           f"output.dir={tmp_path}"])
    msg = str(e.value)
    assert "sampling.seeds" in msg and "sampling.max_tokens" in msg and "generation.batch_size" in msg


def test_bad_model_path_is_exit_2_before_any_engine(tmp_path, capsys):
    code, err = run_cli(["sweep", f"models.0.path={tmp_path}/nope", f"output.dir={tmp_path}/out",
                         f"cache_dir={tmp_path}/cache"], capsys)
    assert code == 2 and "path not found" in err
    assert not (tmp_path / "out").exists()


def test_real_entry_point_prints_no_traceback(tmp_path):
    """The installed console script, as a user runs it: one line on stderr, status 2."""
    exe = Path(sys.executable).parent / "runner"
    proc = subprocess.run([str(exe), "sweep", "sampling.seedz=3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "unknown key 'sampling.seedz'" in proc.stderr
    assert "vllm" not in proc.stderr.lower()


def test_help_does_not_import_vllm_or_ray():
    code = ("import sys; from runner.cli import build_parser; build_parser();"
            "import runner.config, runner.plan, runner.commands.sweep, runner.scenarios;"
            "bad = [m for m in ('vllm', 'ray', 'wandb', 'torch') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
