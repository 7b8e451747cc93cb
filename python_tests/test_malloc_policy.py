"""The commands' malloc policy: freed blocks stay in the process for reuse.

Checked in fresh processes (the policy is process-wide) against glibc's own
accounting (``mallinfo2``): after a 16 MB tensor is freed, its memory is free
space in the heap with the policy, and back with the system without it.
"""

import ctypes
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the policy is glibc's mallopt")

_PROBE = """
import ctypes, torch
from torchlite.utils.malloc_policy import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = keep_freed_memory()
x = torch.ones(4 << 20)  # 16 MB
del x
print(applied, libc.mallinfo2().fordblks >> 20)
"""


def _probe(env_value):
    env = dict(os.environ)
    env.pop("TORCHLITE_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["TORCHLITE_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    applied, free_mb = out.stdout.split()
    return applied == "True", int(free_mb)


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="mallinfo2 needs glibc >= 2.33")
def test_freed_blocks_stay_in_the_heap_with_the_policy_and_not_without():
    applied, free_mb = _probe(None)
    assert applied and free_mb >= 16
    applied, free_mb = _probe("0")
    assert not applied and free_mb < 16


def test_the_commands_apply_it_after_parsing(monkeypatch, tmp_path):
    import torchlite.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        cli.main(["analyze", "--help"])
    assert calls == []  # --help exits while parsing
    code = cli.main(["analyze", "--models", str(tmp_path / "none"), "--ct", str(tmp_path / "none.mhd"),
                     "--out", str(tmp_path / "out")])
    assert code != 0 and calls == [1]  # the command ran (and failed on the missing files) with the policy
