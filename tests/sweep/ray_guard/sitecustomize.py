"""Imported by every Python process of the test's Ray worker node (its PYTHONPATH starts here).

When GROKLAB_TEST_FORBID names a folder (the driver's sweep folder), any attempt of this process to
open, create, rename or remove something under it is refused (PermissionError), as on a cluster
node that does not have the driver's disk, and logged to GROKLAB_TEST_FORBID_LOG so the test can
assert that no worker ever tried. Python's audit hooks see every open()/os.* call made from Python
(torch.save and friends included).
"""

import os
import sys

_FORBID = os.environ.get("GROKLAB_TEST_FORBID")
_LOG = os.environ.get("GROKLAB_TEST_FORBID_LOG")
_PATH_EVENTS = {"open", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree", "os.chmod",
                "os.truncate", "os.link", "os.symlink", "os.utime"}

if _FORBID:
    _ROOT = os.path.realpath(_FORBID)

    def _inside(p) -> bool:
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        if not isinstance(p, (str, os.PathLike)):
            return False
        full = os.path.realpath(os.fspath(p))
        return full == _ROOT or full.startswith(_ROOT + os.sep)

    def _hook(event, args):
        if event not in _PATH_EVENTS:
            return
        paths = args[:2] if event in ("os.rename", "os.replace", "os.link", "os.symlink") else args[:1]
        for p in paths:
            if _inside(p):
                if _LOG:
                    with open(_LOG, "a") as f:
                        f.write(f"{os.getpid()} {event} {os.fspath(p)}\n")
                raise PermissionError(13, "the sweep folder is not reachable from this worker node (test guard)", str(p))

    sys.addaudithook(_hook)
