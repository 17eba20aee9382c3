"""scripts/install-ferretdb.sh on a machine without the binary: it builds, says so, and exits 0.

The first `make test` on a fresh machine runs this path; a run that already has the binary never
does, which is how an exit of 141 on the script's last line once went unseen. Go's module and
build caches are reused (the build path and the final lines still run whole).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-ferretdb.sh"
VERSION = "v1.24.2"


def _install(out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FERRETDB_VERSION"}
    return subprocess.run(
        ["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=900
    )


def test_the_install_script_builds_into_an_empty_folder_and_then_keeps_the_binary(tmp_path: Path) -> None:
    out = tmp_path / "fresh-cache" / "session-analytics" / f"ferretdb-{VERSION}"

    first = _install(out)

    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip().splitlines()[-1] == f"FerretDB {VERSION} installed at {out}"
    version = subprocess.run([str(out), "--version"], capture_output=True, text=True, timeout=30)
    assert f"version: {VERSION}" in version.stdout.splitlines()
    assert not out.with_name(out.name + ".tmp").exists()

    built_at = out.stat().st_mtime_ns
    second = _install(out)

    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    assert out.stat().st_mtime_ns == built_at


def test_a_binary_of_another_version_is_rebuilt(tmp_path: Path) -> None:
    out = tmp_path / f"ferretdb-{VERSION}"
    out.write_text("#!/bin/sh\necho 'version: v1.0.0'\n")
    out.chmod(0o755)

    done = _install(out)

    assert done.returncode == 0, done.stderr[-3000:]
    version = subprocess.run([str(out), "--version"], capture_output=True, text=True, timeout=30)
    assert f"version: {VERSION}" in version.stdout.splitlines()
