"""The one-line reasons the pools store for Ray errors (no Ray needed)."""

from __future__ import annotations

from runner.pipeline.ray_setup import root_cause as _root_cause


class _Err(Exception):
    pass


def test_root_cause_is_the_innermost_error_with_its_continuation_lines():
    text = ("\x1b[36mray::GenerationActor.generate()\x1b[39m (pid=1, ip=10.0.0.1)\n"
            "  File \"x.py\", line 3, in load\n"
            "RuntimeError: engine core failed\n"
            "\nDuring handling of the above exception, another exception occurred:\n\n"
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
            "  Value error, Model architectures ['Nope'] are not supported for now.\n"
            "    For further information visit https://errors.pydantic.dev\n"
            "\nmore text")
    assert _root_cause(_Err(text)) == (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig Value error, "
        "Model architectures ['Nope'] are not supported for now. For further information visit "
        "https://errors.pydantic.dev")


def test_root_cause_falls_back_to_the_first_line():
    assert _root_cause(_Err("The actor died unexpectedly\nsecond line")) == "The actor died unexpectedly"
    assert _root_cause(_Err("")) == "_Err"
    assert len(_root_cause(_Err("ValueError: " + "x" * 2000))) == 500
