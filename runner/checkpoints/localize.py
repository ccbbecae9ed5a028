"""Local copies of remote checkpoints, made in generation actors right before an engine loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runner.checkpoints.files import incomplete_reason
from runner.checkpoints.model import Checkpoint
from runner.remote import fetch_directory, is_model_file, is_tokenizer_file, is_uri, open_location


def localize_checkpoint(ckpt: Checkpoint, cache_dir: str | Path) -> Checkpoint:
    """`ckpt` with every remote directory replaced by a local copy (see `runner.remote`).

    Called by the engine right before it loads, on the node that loads. A copy that turns out
    incomplete (changed since discovery) raises CheckpointError and is not cached.
    """
    if not any(p and is_uri(p) for p in (ckpt.path, ckpt.tokenizer, ckpt.adapter)):
        return ckpt

    def local(uri: str, adapter: bool) -> str:
        if not is_uri(uri):
            return uri
        # Flat and without trainer state: HF checkpoints keep what an engine reads at the top.
        return str(fetch_directory(open_location(uri), cache_dir, recursive=False, keep=is_model_file,
                                   check=lambda d: incomplete_reason(d, adapter=adapter)))

    path = local(ckpt.path, adapter=False)
    adapter = local(ckpt.adapter, adapter=True) if ckpt.adapter else None
    if ckpt.tokenizer == ckpt.path:
        tok = path
    elif ckpt.adapter and ckpt.tokenizer == ckpt.adapter:
        tok = adapter
    elif is_uri(ckpt.tokenizer):  # e.g. the run directory: its tokenizer files only
        tok = str(fetch_directory(open_location(ckpt.tokenizer), cache_dir, recursive=False, keep=is_tokenizer_file))
    else:
        tok = ckpt.tokenizer
    return dataclasses.replace(ckpt, path=path, tokenizer=tok, adapter=adapter)

__all__ = ["localize_checkpoint"]
