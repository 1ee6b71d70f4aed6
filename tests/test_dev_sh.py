"""dev.sh installs the browser with apt, waiting for apt's locks rather than skipping the browser test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_install_chromium(tmp_path: Path, apt_script: str) -> subprocess.CompletedProcess:
    """``install_chromium`` from dev.sh with a stand-in apt-get (which records its arguments) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text("#!/usr/bin/env bash\n" + f'echo "$@" >> {tmp_path / "calls"}\n' + apt_script)
    apt.chmod(0o755)
    function = subprocess.run(["sed", "-n", "/^install_chromium()/,/^}/p", str(ROOT / "dev.sh")],
                              capture_output=True, text=True, check=True).stdout
    assert function.startswith("install_chromium()")
    environment = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CHROMIUM=str(tmp_path / "no-chromium"))
    return subprocess.run(["bash", "-c", function + "\ninstall_chromium"], capture_output=True, text=True,
                          env=environment, timeout=60)


def test_apt_is_asked_to_wait_for_its_locks(tmp_path):
    result = _run_install_chromium(tmp_path, "exit 0\n")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and "update" in calls[0] and "install -y -qq chromium" in calls[1]
    assert all("-o DPkg::Lock::Timeout=600" in call for call in calls)


def test_a_failed_install_says_the_browser_test_is_skipped(tmp_path):
    result = _run_install_chromium(tmp_path, "exit 100\n")
    assert result.returncode == 0  # setup goes on; CI then fails on the skipped browser test, as the message says
    assert "could not install chromium" in result.stderr
