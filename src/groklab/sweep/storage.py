"""Where running sweep jobs keep their checkpoints and progress: `--storage URI` (issue 15).

On a Ray cluster the workers may not see the driver's disk, so a job never writes into the sweep
folder: its results come back through Ray and the driver writes them. What a long job must keep
while it runs (its checkpoint, so a retry on another node resumes; its progress, for the display)
goes to a storage location read and written with pyarrow's filesystem layer:

    file:///shared/ckpt    a path every node sees (NFS, a mounted bucket); also plain /paths
    s3://bucket/prefix     needs pyarrow built with S3 (the PyPI wheels are) and the usual AWS credentials
    gs://bucket/prefix     needs pyarrow built with GCS and Google credentials

Layout: <storage>/<job id>/checkpoint.pt (record.checkpoint_dict, torch.save'd) and
<storage>/<job id>/progress.json. The default is the sweep folder's jobs/ (file://), the same
files the local executor writes; a worker that cannot write there (no shared filesystem) runs the
job without checkpoints and says so in its result, which the driver prints.

Each put is atomic: on a local filesystem a temporary file then a rename; on an object store one
object upload, which readers see whole or not at all.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

from groklab.errors import GroklabError

CKPT, PROGRESS = "checkpoint.pt", "progress.json"


def normalize(uri: str | os.PathLike) -> str:
    """A plain path becomes file:///absolute/path; URIs are kept. Unknown schemes are an error."""
    text = str(uri)
    if "://" not in text:
        return "file://" + str(Path(text).expanduser().resolve())
    return text


class StorageError(GroklabError):
    pass


class JobStorage:
    """A storage URI, opened lazily (the object is pickled to Ray workers; pyarrow opens it there)."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = normalize(uri)
        self._fs = None
        self._root = ""

    def __getstate__(self):
        return {"uri": self.uri}

    def __setstate__(self, d):
        self.__init__(d["uri"])

    def open(self) -> "JobStorage":
        """Resolve the filesystem now (the driver calls it to fail early on a bad --storage)."""
        if self._fs is None:
            import pyarrow.fs as pafs

            try:
                self._fs, self._root = pafs.FileSystem.from_uri(self.uri)
            except (ValueError, OSError) as e:  # ArrowInvalid (unknown scheme) is a ValueError
                scheme = self.uri.split("://")[0]
                hint = (f"; {scheme}:// needs pyarrow built with {scheme.upper()} support and credentials"
                        if scheme in ("s3", "gs", "gcs", "hdfs") else "")
                raise StorageError(f"--storage {self.uri}: cannot open it ({e}){hint}") from None
        return self

    @property
    def local(self) -> bool:
        return self.open()._fs.type_name == "local"

    def _path(self, jid: str, name: str | None = None) -> str:
        base = f"{self._root.rstrip('/')}/{jid}"
        return base if name is None else f"{base}/{name}"

    def put(self, jid: str, name: str, data: bytes) -> None:
        """Write <storage>/<jid>/<name> atomically; StorageError (one line) if it cannot be written."""
        fs = self.open()._fs
        final = self._path(jid, name)
        target = f"{final}.{uuid.uuid4().hex[:8]}.tmp" if self.local else final
        try:
            fs.create_dir(self._path(jid), recursive=True)
            with fs.open_output_stream(target) as f:
                f.write(data)
            if target != final:
                fs.move(target, final)
        except OSError as e:
            if self.local and target != final:
                try:
                    fs.delete_file(target)
                except OSError:
                    pass
            raise StorageError(f"could not write {self.uri.rstrip('/')}/{jid}/{name}: {e}") from None

    def get(self, jid: str, name: str) -> bytes | None:
        fs = self.open()._fs
        try:
            with fs.open_input_stream(self._path(jid, name)) as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def delete(self, jid: str) -> None:
        try:
            self.open()._fs.delete_dir(self._path(jid))
        except (FileNotFoundError, OSError):
            pass

    # -- typed helpers --
    def put_checkpoint(self, jid: str, ck: dict) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(ck, buf)
        self.put(jid, CKPT, buf.getvalue())

    def get_checkpoint(self, jid: str, device) -> dict | None:
        """The job's last checkpoint dict, or None (none yet, or unreadable: the job starts over)."""
        import torch

        raw = self.get(jid, CKPT)
        if raw is None:
            return None
        try:
            return torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
        except Exception:  # a torn object cannot happen with atomic puts; start over rather than fail
            return None

    def put_json(self, jid: str, name: str, obj: dict) -> None:
        self.put(jid, name, (json.dumps(obj) + "\n").encode())

    def progress(self, jids) -> dict[str, dict]:
        out = {}
        for jid in jids:
            raw = self.get(jid, PROGRESS)
            if raw:
                try:
                    out[jid] = json.loads(raw)
                except ValueError:
                    pass
        return out
