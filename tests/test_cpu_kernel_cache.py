"""Issue 23 item 11: a cached CPU kernel library is verified (size + SHA-256 record) before it is loaded.

A truncated library crashed the process when loaded ("Bus error", rc 135) and a zero-byte one silently fell
back to another build; both must now be rebuilt. Every test uses its own cache folder ($NEURAL3D_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from neural3d.fields.backends import cpu_hash

pytestmark = pytest.mark.skipif(cpu_hash.find_compiler() is None, reason="no C compiler to build the CPU kernel")


def _flags_and_target():
    compiler = cpu_hash.find_compiler()
    flags = cpu_hash._FLAGS + cpu_hash._OPENMP
    return compiler, flags, cpu_hash.library_path(compiler, flags)


def _check_kernel_works(lib):
    # the library must compute: compare one forward against the PyTorch reference
    from neural3d.fields.hashgrid import HashGridEncoding, hash_encode

    enc = HashGridEncoding(n_levels=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8)
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(0))
    table = enc.table().detach()
    out = torch.empty(64, enc.layout.n_levels * enc.layout.n_features)
    lib.n3d_hash_forward(x.data_ptr(), table.data_ptr(), out.data_ptr(), 64, *cpu_hash._layout_args(enc.layout))
    torch.testing.assert_close(out, hash_encode(x, table, enc.layout), atol=1e-5, rtol=1e-5)


def test_build_writes_a_matching_record(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURAL3D_CACHE_DIR", str(tmp_path))
    _, _, target = _flags_and_target()
    lib = cpu_hash.load_library.__wrapped__()
    rec = json.loads(cpu_hash.record_path(target).read_text())
    assert rec["size"] == target.stat().st_size > 0
    assert cpu_hash.verify_cached(target) is None
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".tmp",) or p.name.startswith("tmp")]
    _check_kernel_works(lib)


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "altered"])
def test_damaged_cached_library_is_rebuilt(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("NEURAL3D_CACHE_DIR", str(tmp_path))
    compiler, flags, target = _flags_and_target()
    cpu_hash._build(compiler, flags, target)
    good = target.read_bytes()
    record = cpu_hash.record_path(target).read_text()
    if kind == "zero-byte":
        target.write_bytes(b"")
    elif kind == "truncated":
        target.write_bytes(good[: len(good) // 2])
    else:  # same size, one byte changed
        target.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    assert cpu_hash.verify_cached(target) is not None
    with pytest.warns(RuntimeWarning, match="does not match its record"):
        lib = cpu_hash.load_library.__wrapped__()
    assert cpu_hash.verify_cached(target) is None and target.stat().st_size == json.loads(record)["size"]
    _check_kernel_works(lib)


def test_library_without_a_record_is_rebuilt(tmp_path, monkeypatch):
    # a zero-byte library and no record (e.g. a cache written by an older version, then damaged)
    monkeypatch.setenv("NEURAL3D_CACHE_DIR", str(tmp_path))
    _, _, target = _flags_and_target()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    lib = cpu_hash.load_library.__wrapped__()
    assert target.stat().st_size > 0 and cpu_hash.verify_cached(target) is None
    _check_kernel_works(lib)


def test_truncated_cached_library_does_not_crash_a_fresh_process(tmp_path):
    # the reported failure: a fresh process loading a truncated library died with SIGBUS (rc 135)
    env = {**os.environ, "NEURAL3D_CACHE_DIR": str(tmp_path)}
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from neural3d.fields.backends import cpu_hash\n"
        "c = cpu_hash.find_compiler(); f = cpu_hash._FLAGS + cpu_hash._OPENMP\n"
        "t = cpu_hash.library_path(c, f)\n"
        "import sys\n"
        "if sys.argv[1] == 'damage':\n"
        "    cpu_hash._build(c, f, t); b = t.read_bytes(); t.write_bytes(b[: len(b) // 3])\n"
        "else:\n"
        "    cpu_hash.load_library(); print('rebuilt', cpu_hash.verify_cached(t))\n"
    )
    subprocess.run([sys.executable, "-c", code, "damage"], env=env, check=True, timeout=120)
    proc = subprocess.run([sys.executable, "-c", code, "load"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilt None" in proc.stdout
