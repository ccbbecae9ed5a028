"""The launch files in cluster/ are real: each passes its platform's own validation and runs the
entrypoint the tests submit (`python -m runner.cli sweep CONFIG ...` as a Ray job, or
`runner submit ... --follow`, which sends exactly that)."""

from __future__ import annotations

import copy
import gzip
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from runner.cli import build_parser
from runner.config import load_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
RAYJOB_SCHEMA = REPO / "tests" / "data" / "kuberay-v1.7.0-rayjob-v1-schema.json.gz"


def _config_of(argv: list[str]):
    """The sweep config a runner command line would run (validated locally, as `runner submit` does)."""
    ns = build_parser().parse_args(argv)
    config = next((a for a in ns.args if a.endswith((".yaml", ".yml"))), None)
    return load_config(REPO / config if config else None, [a for a in ns.args if "=" in a])


def test_ray_cluster_launcher_config_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))   # what `ray up` runs first
    broken = {**copy.deepcopy(config), "head_node_typo": "x"}
    with pytest.raises(Exception, match="head_node_typo"):
        validate_config(prepare_config(broken))
    # The nodes install this package (jobs run the installed code), and the header's submit
    # command is a valid runner command.
    assert any("pip install" in c and "-e" in c for c in config["setup_commands"])
    text = (CLUSTER / "ray-cluster.yaml").read_text()
    submit = re.search(r"#\s+(runner submit .*?--follow)", text.replace("\\\n#", " "), re.S).group(1)
    cfg = _config_of(shlex.split(submit)[1:])
    assert cfg.output.dir == "/shared/evals/my-run"


def _strict(schema: dict) -> dict:
    """The CRD schema as `kubectl apply --validate=strict` reads it: unknown fields are errors
    wherever the schema lists properties and does not preserve unknown fields."""
    s = dict(schema)
    if "required" in s:  # the API server fills defaults before it checks required fields
        s["required"] = [k for k in s["required"] if "default" not in s.get("properties", {}).get(k, {})]
    if "properties" in s:
        s["properties"] = {k: _strict(v) for k, v in s["properties"].items()}
        if "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if isinstance(s.get("items"), dict):
        s["items"] = _strict(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = _strict(s["additionalProperties"])
    if s.get("x-kubernetes-int-or-string"):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return s


def test_kuberay_rayjob_is_valid_against_the_rayjob_crd():
    import jsonschema

    schema = _strict(json.loads(gzip.decompress(RAYJOB_SCHEMA.read_bytes()))["schema"])
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    jsonschema.validate(job, schema)
    typo = copy.deepcopy(job)
    typo["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParam"] = {}
    with pytest.raises(jsonschema.ValidationError, match="rayStartParam"):
        jsonschema.validate(typo, schema)
    # KubeRay submits the entrypoint through the Job API: the command `runner submit` sends.
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "runner.cli", "sweep"]
    assert _config_of(argv[3:]).output.dir == "/data/evals/rl-run"


def test_slurm_script_parses_and_starts_ray_as_rays_slurm_guide_does():
    path = CLUSTER / "slurm-sweep.sbatch"
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    # The guide's order: hostnames, head IP, head `ray start --head ... --block &`, a wait, one
    # `ray start --address ... --block &` per other node, then the workload.
    steps = [r'scontrol show hostnames "\$SLURM_JOB_NODELIST"',
             r'srun --nodes=1 --ntasks=1 -w "\$head_node" hostname --ip-address',
             r'srun --nodes=1 --ntasks=1 -w "\$head_node" \\\n\s+ray start --head --node-ip-address="\$head_node_ip" '
             r'--port=\$port[^\n]*\\\n[^\n]*--block &',
             r"sleep 10",
             r"for \(\(i = 1; i <= worker_num; i\+\+\)\)",
             r'srun --nodes=1 --ntasks=1 -w "\$node_i" \\\n\s+ray start --address "\$ip_head" \\\n[^\n]*--block &',
             r"runner submit conf/cluster-gpu.yaml"]
    pos = 0
    for step in steps:
        m = re.compile(step).search(text, pos)
        assert m, f"missing or out of order: {step}"
        pos = m.end()
    submit = text[text.rindex("\nrunner submit") + 1:].replace("\\\n", " ").split("\n")[0]
    argv = shlex.split(submit.replace('"$RUN_DIR"', "/shared/run").replace('"$OUT_DIR"', "/shared/out"))
    assert "--follow" in argv
    assert _config_of([a for a in argv[1:] if a != "--follow" and not a.startswith(("--address", "http"))]
                      ).models[0].path == "/shared/run"
