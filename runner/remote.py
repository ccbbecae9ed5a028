"""Model and run directories on any filesystem, and local copies of remote checkpoints.

A `models[].path` (or `base_model`, `tokenizer`, or `runner watch RUN_DIR`) is either a local
path or a filesystem URI: `s3://bucket/run`, `gs://bucket/run`, `hdfs://namenode:8020/run`,
`abfs://...`, `file:///abs/run`. URIs are opened with `pyarrow.fs.FileSystem.from_uri`; a scheme
pyarrow does not know goes to fsspec when it is installed (`memory://`, or e.g. `az://` with
adlfs). Credentials come from each filesystem's usual environment (AWS_* variables, instance
roles, `GOOGLE_APPLICATION_CREDENTIALS`, ...), never from the config.

Who reads what:
- The driver only *lists*: it finds checkpoint subdirectories and checks that they are complete
  (`runner.checkpoints`), reading at most the headers of safetensors files. It never copies
  weights.
- Each generation actor copies the checkpoint it is about to load into its node's local cache
  (`localize_checkpoint`, called by the vLLM backend right before the engine loads), because
  engines load from local files and every node needs its own copy. The copy lands in
  `<cache_dir>/remote/<name>-<key>/`, where the key hashes the URI and every file's name, size and
  mtime: a checkpoint rewritten in place is fetched again, an unchanged one is copied once per
  node and reused by every actor and run on that node. Files are copied into a hidden
  temporary directory, checked (sizes as listed, weights whole) and then renamed into place,
  so a crash or a concurrent copy never leaves a partial directory under the final name.
- Local paths are used where they are; nothing is copied.

The cache is not pruned: it grows by one copy per remote checkpoint per node. Delete
`<cache_dir>/remote/` between runs to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runner.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Tokenizer files fetched from a directory that also holds other things (a run's root).
_TOKENIZER_FILE = re.compile(r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|vocab\..*|merges\.txt"
                             r"|chat_template\..*|.*\.tiktoken|spiece\.model|sentencepiece.*\.model)$")


def is_uri(path: str) -> bool:
    """`s3://...`, `file:///...`: a URI. `/abs`, `rel/dir`, `~/x`, `builtin:demo-rl`: not."""
    return bool(_URI.match(path))


# Trainer state saved beside the weights (optimizer, scheduler, RNG, DeepSpeed shards): often
# several times the weights' size and never read by an engine. HF weights are never .pt/.pth.
_TRAINER_STATE = re.compile(r"^(global_step[^/]*/.*|.*\.(pt|pth))$")


def is_model_file(rel: str) -> bool:
    """What an engine needs from a checkpoint directory: everything but trainer state."""
    return not _TRAINER_STATE.match(rel)


def is_tokenizer_file(name: str) -> bool:
    return bool(_TOKENIZER_FILE.match(name))


@dataclass(frozen=True)
class Entry:
    """One file or directory below a Location, by its path relative to it ('/'-separated)."""

    rel: str
    is_dir: bool
    size: int | None = None
    mtime_ns: int | None = None


class Location:
    """A directory on some filesystem: a local path, or a URI opened with pyarrow (or fsspec).

    `uri` is how it is named in Checkpoints and messages: the absolute path for local
    directories, the URI (with its query, e.g. `?region=...`) for remote ones.
    """

    def __init__(self, fs, path: str, uri: str, remote: bool):
        self.fs = fs          # a pyarrow.fs.FileSystem
        self.path = path      # the path inside fs
        self.uri = uri
        self.remote = remote

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, name: str) -> "Location":
        path = f"{self.path.rstrip('/')}/{name}"
        if not self.remote:
            return Location(self.fs, path, path, False)
        base, sep, query = self.uri.partition("?")  # keep options such as ?region=... at the end
        return Location(self.fs, path, f"{base.rstrip('/')}/{name}{sep}{query}", True)

    def kind(self) -> str:
        """'dir', 'file' or 'missing'. Raises CheckpointError when the filesystem cannot be read."""
        from pyarrow.fs import FileType

        info = self._call(self.fs.get_file_info, self.path)
        return {FileType.Directory: "dir", FileType.File: "file"}.get(info.type, "missing")

    def exists(self, rel: str) -> bool:
        return self.child(rel).kind() != "missing"

    def entries(self, recursive: bool = False) -> list[Entry]:
        """Files and directories below this one, sorted by relative path."""
        from pyarrow.fs import FileSelector, FileType

        infos = self._call(self.fs.get_file_info, FileSelector(self.path, recursive=recursive))
        base = self.path.rstrip("/") + "/"
        out = []
        for i in infos:
            rel = i.path[len(base):] if i.path.startswith(base) else i.path.rsplit("/", 1)[-1]
            is_dir = i.type == FileType.Directory
            out.append(Entry(rel, is_dir, None if is_dir else i.size, i.mtime_ns))
        return sorted(out, key=lambda e: e.rel)

    def open(self, rel: str):
        """A random-access file below this directory (ranged reads on object stores)."""
        return self._call(self.fs.open_input_file, self.child(rel).path)

    def read_text(self, rel: str) -> str:
        with self.open(rel) as fh:
            return fh.read().decode("utf-8")

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except (OSError, ValueError) as e:  # pyarrow: ArrowIOError is OSError, ArrowInvalid ValueError
            raise CheckpointError(f"cannot read {self.uri}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def open_location(raw: str, what: str = "path") -> Location:
    """The directory `raw` names. `what` names the setting in error messages.

    Raises ConfigError for a URI no installed filesystem understands, CheckpointError when the
    filesystem cannot be set up (missing library, credentials, network).
    """
    if not is_uri(raw):
        from pyarrow.fs import LocalFileSystem

        path = str(Path(os.path.expanduser(raw)).resolve())
        return Location(LocalFileSystem(), path, path, False)
    fs, path = _filesystem_from_uri(raw, what)
    base, sep, query = raw.partition("?")
    return Location(fs, path.rstrip("/") or "/", f"{base.rstrip('/')}{sep}{query}", True)


def _filesystem_from_uri(uri: str, what: str):
    import pyarrow as pa
    from pyarrow.fs import FileSystem

    scheme = uri.split("://", 1)[0].lower()
    try:
        return FileSystem.from_uri(uri)
    except pa.ArrowInvalid as e:
        if "Unrecognized filesystem type" not in str(e):
            raise ConfigError(f"config error: {what} '{uri}' is not a valid URI: {_first_line(e)}") from None
    except (OSError, ValueError) as e:  # e.g. no libjvm for hdfs, a bucket's region not resolvable
        raise CheckpointError(f"{what} '{uri}': cannot open the {scheme} filesystem: {_first_line(e)}") from None
    return _fsspec_filesystem(uri, scheme, what)


def _fsspec_filesystem(uri: str, scheme: str, what: str):
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"config error: {what} '{uri}': unknown filesystem scheme '{scheme}://' (pyarrow knows "
                          "file, s3, gs, hdfs, abfs; install fsspec and its plugin for others)") from None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as e:  # a known protocol whose plugin (s3fs, adlfs, ...) is missing
        raise ConfigError(f"config error: {what} '{uri}': {_first_line(e)}") from None
    except ValueError as e:
        raise ConfigError(f"config error: {what} '{uri}': unknown filesystem scheme '{scheme}://' "
                          f"(neither pyarrow nor fsspec knows it: {_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 -- plugins raise what they like (credentials, network)
        raise CheckpointError(f"{what} '{uri}': cannot open the {scheme} filesystem: {_first_line(e)}") from None
    return PyFileSystem(FSSpecHandler(fs)), path


# ---------------------------------------------------------------------------------------------
# Local copies (called in generation actors, right before an engine loads)


def fetch_directory(loc: Location, cache_dir: str | Path, *, recursive: bool = True,
                    keep: Callable[[str], bool] | None = None,
                    check: Callable[[Path], str | None] | None = None) -> Path:
    """A local copy of `loc` under `<cache_dir>/remote/`, made once per content version.

    `keep(rel)` selects files (default: all, skipping hidden ones); `check(local_dir)` returns
    why the copy is unusable (e.g. a truncated weight file), which raises CheckpointError and
    leaves nothing in the cache.
    """
    files = [e for e in loc.entries(recursive=recursive)
             if not e.is_dir and not any(p.startswith(".") for p in e.rel.split("/"))
             and (keep is None or keep(e.rel))]
    if not files:
        raise CheckpointError(f"cannot copy {loc.uri}: no files there")
    key = hashlib.sha256(json.dumps([loc.uri, [(e.rel, e.size, e.mtime_ns) for e in files]]).encode()).hexdigest()
    root = Path(os.path.expanduser(str(cache_dir))) / "remote"
    dest = root / f"{_safe(loc.name)}-{key[:20]}"
    if dest.is_dir():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for e in files:
            target = tmp / e.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with loc._call(loc.fs.open_input_stream, loc.child(e.rel).path) as src, open(target, "wb") as dst:
                while chunk := src.read(8 << 20):
                    dst.write(chunk)
            got = target.stat().st_size
            if e.size is not None and got != e.size:
                raise CheckpointError(f"copying {loc.uri}: {e.rel} has {got} bytes, the listing said {e.size} "
                                      "(changed while copying?)")
        if check is not None and (why := check(tmp)):
            raise CheckpointError(f"copy of {loc.uri} is not usable: {why}")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # not another actor's finished copy of the same version
                raise
        log.info("copied %s to %s (%d files)", loc.uri, dest, len(files))
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "dir"


__all__ = ["Entry", "Location", "fetch_directory", "is_tokenizer_file", "is_uri", "open_location"]
