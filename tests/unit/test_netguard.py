"""tests/netguard: the suite runs offline; any non-loopback connection fails, here and in every subprocess."""

import socket
import subprocess
import sys

import pytest

from tests.jobs import REPO, job_env


def test_outside_connections_fail_in_process() -> None:
    with pytest.raises(RuntimeError, match="network access blocked"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(RuntimeError, match="network access blocked"):
        socket.create_connection(("10.1.2.3", 443), timeout=1)


def test_loopback_is_allowed() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with socket.create_connection(server.getsockname(), timeout=1):
        pass
    server.close()


def test_outside_connections_fail_in_subprocesses(tmp_path) -> None:
    code = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=1)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=job_env(tmp_path), capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode != 0 and "network access blocked" in done.stderr
