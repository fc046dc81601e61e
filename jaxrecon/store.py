"""The on-disk store of a run: atomic file writes and the resumable chunks of deletions.

A run folder holds `run.json` (the config and its hash), `chunks/chunk-<k>.npz` (one per finished
chunk of deletions, tagged with the config hash) and the final files. Every file is written to a
temporary file beside its path and published by one rename, so a reader, or a run killed part-way,
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable

import numpy as np

from jaxrecon import _validate
from jaxrecon.config import RunConfig, config_hash

OUTPUT_FILES = ("summary.json", "deletions.csv", "cdf.png", "reconstructions.png", "arrays.npz")
CHUNKS = "chunks"
MARKER = "run.json"


def atomic_write(path: str, writer: Callable[[str], None]) -> None:
    """writer(tmp) fills a temporary file beside `path`, then one rename publishes it."""
    folder, name = os.path.split(path)
    # Keep the extension: matplotlib and numpy pick the format from it.
    fd, tmp = tempfile.mkstemp(
        dir=folder or ".", prefix=f".{name}.", suffix=".tmp" + os.path.splitext(name)[1]
    )
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def text_writer(content: str) -> Callable[[str], None]:
    """A writer for `atomic_write` that writes `content` as text."""

    def writer(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(content)

    return writer


def prepare_out_dir(out_dir: str, config: RunConfig, *, overwrite: bool = False) -> bool:
    """Checks, without writing anything, whether `out_dir` can take a run of `config`.

    A new or empty folder, or one holding the same config (the run resumes from its saved
    chunks), is accepted. A folder holding another config is refused unless `overwrite`.

    Returns:
      True when an earlier run of the same config will be resumed.

    Raises:
      InputError: `out_dir` holds a different run and `overwrite` is false.
    """
    previous = stored_hash(out_dir)
    if previous is None:
        return False
    digest = config_hash(config)
    if previous == digest:
        return not overwrite
    if not overwrite:
        raise _validate.fail(
            "out",
            f"{out_dir!r} holds a run with a different config (hash {previous}, this one "
            f"{digest}); pass --overwrite to replace it or choose another --out",
        )
    return False


def stored_hash(out_dir: str) -> str | None:
    """The config hash of the run in `out_dir` ("unreadable" for a damaged marker), or None."""
    marker = os.path.join(out_dir, MARKER)
    if not os.path.exists(marker):
        return None
    try:
        with open(marker) as f:
            return str(json.load(f).get("config_hash"))
    except (OSError, ValueError, AttributeError):
        return "unreadable"


class ChunkStore:
    """Finished chunks of deletions under <out>/chunks/, one npz each, written atomically."""

    def __init__(self, out_dir: str, digest: str):
        self.folder = os.path.join(out_dir, CHUNKS)
        self.digest = digest

    @classmethod
    def open(cls, out_dir: str, config: RunConfig, *, overwrite: bool) -> ChunkStore:
        """Claims `out_dir` for `config`: writes run.json, replacing another run if allowed."""
        resume = prepare_out_dir(out_dir, config, overwrite=overwrite)
        digest = config_hash(config)
        if not resume:
            if stored_hash(out_dir) is not None or overwrite:
                _remove_run_files(out_dir)
            os.makedirs(out_dir, exist_ok=True)
            payload = {"config_hash": digest, "config": dataclasses.asdict(config)}
            atomic_write(
                os.path.join(out_dir, MARKER), text_writer(json.dumps(payload, indent=2) + "\n")
            )
        store = cls(out_dir, digest)
        os.makedirs(store.folder, exist_ok=True)
        # A run killed while writing leaves a hidden temporary file; it was never published.
        ours = tuple(f".{name}." for name in OUTPUT_FILES + (MARKER,)) + (".chunk-",)
        for folder in (out_dir, store.folder):
            for name in os.listdir(folder):
                if name.startswith(ours) and ".tmp" in name:
                    os.remove(os.path.join(folder, name))
        return store

    def _path(self, number: int) -> str:
        return os.path.join(self.folder, f"chunk-{number:05d}.npz")

    def load(self, number: int, deleted: np.ndarray) -> dict[str, np.ndarray] | None:
        """The saved chunk, or None when it is missing, unreadable, made by another config or
        for other deletions (it is then recomputed)."""
        path = self._path(number)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError):
            return None
        if str(arrays.pop("config_hash", "")) != self.digest:
            return None
        if not np.array_equal(arrays.get("deleted"), deleted):
            return None
        return arrays

    def save(self, number: int, arrays: dict[str, np.ndarray]) -> None:
        """Publishes chunk `number` atomically, tagged with the config hash."""

        def writer(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, config_hash=np.asarray(self.digest), **arrays)

        atomic_write(self._path(number), writer)


def _remove_run_files(out_dir: str) -> None:
    for name in OUTPUT_FILES + (MARKER,):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.remove(path)
    chunks = os.path.join(out_dir, CHUNKS)
    if os.path.isdir(chunks):
        for name in os.listdir(chunks):
            os.remove(os.path.join(chunks, name))
        os.rmdir(chunks)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
