"""Is one directory a loadable Hugging Face model (or PEFT adapter)? Read from its listing and
small files only: config.json, the weight index, tokenizer JSON files and safetensors headers,
so this is cheap on object stores too.

Adapter files (`adapter_model.*`) never count as model weights: vLLM cannot load a LoRA
directory as a model, so a directory holding only an adapter is not a full checkpoint.
"""

from __future__ import annotations

import json
import re
import time

from runner.errors import CheckpointError
from runner.remote import Entry, Location, open_location

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Tokenizer files that are JSON: each must parse, or the engine fails at load with a traceback.
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")

# Parsed small files, keyed by (uri, size, mtime): a watcher re-checks every poll, and a
# tokenizer.json of a few MB should be read once per version, not once per poll.
_PARSED: dict[tuple, object] = {}


def has_tokenizer(names) -> bool:
    return "tokenizer.json" in names or "tokenizer_config.json" in names


def read_json(loc: Location, rel: str, entry: Entry | None = None) -> object:
    """`rel` below `loc` parsed as JSON. Raises ValueError (with the reason) when it is not."""
    key = (loc.child(rel).uri, entry.size if entry else None, entry.mtime_ns if entry else None)
    if entry is not None and entry.mtime_ns is not None and key in _PARSED:
        return _PARSED[key]
    try:
        with loc.open(rel) as fh:
            raw = fh.read()
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{rel} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{rel} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if len(_PARSED) > 512:
        _PARSED.clear()
    _PARSED[key] = value
    return value


def safetensors_truncated(loc: Location, rel: str, size: int | None) -> str | None:
    """Why the .safetensors file `rel` below `loc` is not whole (still being written), or None.

    The format is an 8-byte header length, a JSON header whose tensors' data_offsets end at the
    data size, then the data: a file shorter than that is a partial write.
    """
    try:
        with loc.open(rel) as fh:
            if size is None:
                size = fh.size()
            head = fh.read(8)
            if len(head) < 8:
                return f"{rel} is truncated"
            n = int.from_bytes(head, "little")
            if n <= 0 or 8 + n > size:
                return f"{rel} is truncated (header)"
            header = json.loads(fh.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, CheckpointError, KeyError, TypeError, AttributeError, IndexError) as e:
        return f"{rel} is unreadable ({e})"
    return f"{rel} is truncated ({size} of {8 + n + end} bytes)" if size < 8 + n + end else None


def config_problem(loc: Location, files: dict[str, Entry]) -> str | None:
    """config.json must be a JSON object naming what vLLM builds: `architectures` or `model_type`."""
    if "config.json" not in files:
        return "no config.json"
    try:
        cfg = read_json(loc, "config.json", files["config.json"])
    except (ValueError, CheckpointError) as e:
        return str(e)
    if not isinstance(cfg, dict):
        return "config.json is not a JSON object"
    archs = cfg.get("architectures")
    if not (isinstance(archs, list) and archs and all(isinstance(a, str) for a in archs)) \
            and not (isinstance(cfg.get("model_type"), str) and cfg["model_type"]):
        return "config.json names neither 'architectures' nor 'model_type' (vLLM needs one to build the model)"
    return None


def tokenizer_problem(loc: Location, files: dict[str, Entry]) -> str | None:
    """Why the tokenizer files directly in `loc` cannot be loaded (a JSON one does not parse)."""
    for rel in TOKENIZER_JSON:
        if rel in files:
            try:
                value = read_json(loc, rel, files[rel])
            except (ValueError, CheckpointError) as e:
                return str(e)
            if not isinstance(value, dict):
                return f"{rel} is not a JSON object"
    return None


def weights_problem(loc: Location, files: dict[str, Entry]) -> str | None:
    """Full model weights: every shard the index names (and every `-of-N` shard), each whole."""
    top = sorted(rel for rel in files if "/" not in rel)
    indexes = [n for n in top if n.endswith(".safetensors.index.json") and not n.startswith("adapter_model")]
    indexes += [n for n in top if n == "pytorch_model.bin.index.json"]
    shard_names = [n for n in top if _shard_total(n) and not n.startswith("adapter_model")]
    if indexes:
        try:
            index = read_json(loc, indexes[0], files[indexes[0]])
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError, CheckpointError):
            return f"unreadable weight index {indexes[0]}"
        missing = [s for s in shards if s not in files]
        if missing:
            return f"missing weight shards {', '.join(missing)}"
        weights = shards
    elif shard_names:
        # transformers writes the shards first and the index last: shards without it are mid-save.
        total = _shard_total(shard_names[0])
        return f"sharded weights without their index ({len(shard_names)} of {total} shards, no *.index.json yet)"
    else:
        weights = [n for n in top if n.endswith(".safetensors") and not n.startswith("adapter_model")]
        weights += [n for n in top if n.startswith("pytorch_model") and n.endswith(".bin")]
        if not weights:
            if any(n in files for n in ADAPTER_WEIGHTS):
                return "holds only LoRA adapter weights (adapter_model.*), no full model weights"
            return "no weight files (*.safetensors or pytorch_model*.bin)"
    for name in {n for n in shard_names if n in weights}:
        total = _shard_total(name)
        have = [n for n in shard_names if _shard_total(n) == total and _same_series(n, name)]
        if len(have) < total:
            return f"{len(have)} of {total} weight shards ({name.split('-0')[0]}-*-of-{total:05d})"
    for w in weights:
        if w.endswith(".safetensors") and (why := safetensors_truncated(loc, w, files[w].size)):
            return why
    return None


def _shard_total(name: str) -> int:
    """N of `model-00001-of-0000N.safetensors`, 0 when `name` is not such a shard."""
    m = re.match(r"^.+-\d{5}-of-(\d{5})\.(safetensors|bin)$", name)
    return int(m.group(1)) if m else 0


def _same_series(a: str, b: str) -> bool:
    return a.rsplit("-", 3)[0] == b.rsplit("-", 3)[0]


def adapter_rank(loc: Location) -> int:
    """The largest LoRA rank in a PEFT adapter_config.json (`r` and any `rank_pattern` value)."""
    try:
        cfg = json.loads(loc.read_text(ADAPTER_CONFIG))
        ranks = [cfg["r"], *(cfg.get("rank_pattern") or {}).values()]
        if not all(isinstance(r, int) and r > 0 for r in ranks):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{ADAPTER_CONFIG} is not a PEFT LoRA config with a positive integer rank 'r'") from None
    return max(ranks)


def adapter_problem(loc: Location, files: dict[str, Entry]) -> str | None:
    if ADAPTER_CONFIG not in files:
        return f"no {ADAPTER_CONFIG}"
    try:
        adapter_rank(loc)
    except CheckpointError as e:
        return str(e)
    if "adapter_model.safetensors" in files:
        return safetensors_truncated(loc, "adapter_model.safetensors", files["adapter_model.safetensors"].size)
    if "adapter_model.bin" not in files:
        return "no adapter weights (adapter_model.safetensors)"
    return None


def quiet_problem(files: dict[str, Entry], stable_seconds: float, strict: bool = True) -> str | None:
    """Why the directory may still be changing: a file modified within `stable_seconds`.

    `strict`: a filesystem without modification times is a reason; otherwise (a layout's own
    default, not the user's setting) the rule is skipped there.
    """
    if stable_seconds <= 0 or not files:
        return None
    mtimes = [e.mtime_ns for e in files.values()]
    if any(m is None for m in mtimes):
        return ("file modification times are unknown on this filesystem; complete_after_seconds cannot apply"
                if strict else None)
    age = time.time() - max(mtimes) / 1e9
    if age < stable_seconds:
        return f"modified {age:.0f}s ago (waiting for {stable_seconds:.0f}s without changes)"
    return None


def incomplete_reason(path: Location | str, marker: str | None = None, stable_seconds: float = 0,
                      adapter: bool = False) -> str | None:
    """Why `path` is not a complete HF checkpoint (or, with `adapter`, LoRA adapter), or None.

    Always: config.json with `architectures` or `model_type`, every weight shard, each
    safetensors file whole (adapters: adapter_config.json with a rank, and whole adapter
    weights). Optionally: a marker file the trainer writes last, and no file modified for
    `stable_seconds`.
    """
    loc = path if isinstance(path, Location) else open_location(str(path))
    files = {e.rel: e for e in loc.entries(recursive=True) if not e.is_dir}
    why = adapter_problem(loc, files) if adapter else (config_problem(loc, files) or weights_problem(loc, files))
    if why:
        return why
    if marker and marker not in files and not loc.exists(marker):
        return f"no {marker} marker yet"
    return quiet_problem(files, stable_seconds)


__all__ = ["ADAPTER_CONFIG", "adapter_problem", "adapter_rank", "config_problem", "has_tokenizer",
           "incomplete_reason", "quiet_problem", "read_json", "safetensors_truncated", "tokenizer_problem",
           "weights_problem"]
