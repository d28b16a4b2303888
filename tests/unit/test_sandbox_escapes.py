"""The code execution sandbox, attacked: each escape tried is asserted contained, and the sandbox (and
code run beside it) goes on working afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
from pathlib import Path

import pytest

from localgem.sandbox.runner import DEADLINE, FAILED, OK, InputFile, Sandbox, SandboxLimits
from tests.sandboxes import requires_sandbox

pytestmark = requires_sandbox

LIMITS = SandboxLimits(cpu_seconds=2, wall_seconds=4, memory_bytes=1 << 30, output_bytes=4096)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(LIMITS, warm=1, concurrency=4)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(box.start())
    yield lambda code, files=(): loop.run_until_complete(box.run(code, files))
    loop.run_until_complete(box.close())
    loop.close()


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the host's loopback: code in the sandbox must not reach it."""
    server = socket.create_server(("127.0.0.1", 0))
    reached = []
    threading.Thread(target=lambda: reached.append(server.accept()), daemon=True).start()
    yield server.getsockname()[1], reached
    server.close()


def test_ordinary_code_runs_with_its_libraries_and_files(sandbox) -> None:
    result = sandbox(
        "import numpy, pandas, scipy, sympy\n"
        "frame = pandas.read_csv('input_file_0.csv')\n"
        "print(int(frame['a'].sum()), sympy.factorint(360), round(float(scipy.special.gamma(5))))",
        [InputFile("input_file_0.csv", b"a,b\n1,2\n3,4\n")],
    )
    assert (result.outcome, result.stdout) == (OK, "4 {2: 3, 3: 2, 5: 1} 24\n")


ESCAPES = {
    "the internet": "import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)",
    "a name lookup": "import socket; socket.getaddrinfo('example.com', 80)",
    "/etc/shadow": "print(open('/etc/shadow').read())",
    "/etc/passwd": "print(open('/etc/passwd').read())",
    "writing the system": "open('/usr/bin/evil', 'w').write('x')",
    "writing the interpreter": "import os; open(os.__file__, 'a').write('x')",
    "becoming root": "import os; os.setuid(0)",
    "mounting": "import ctypes; assert ctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None) == 0, 'EPERM'",
    "a raw socket": "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_an_escape_fails_inside(sandbox, name: str) -> None:
    result = sandbox(ESCAPES[name])
    assert result.outcome == FAILED, (name, result)
    assert "Traceback" in result.stderr


def test_the_hosts_loopback_is_not_reachable(sandbox, listener) -> None:
    port, reached = listener
    result = sandbox(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)")
    assert result.outcome == FAILED and "Connection refused" in result.stderr
    assert not reached


def test_the_data_dir_and_the_servers_environment_are_not_there(sandbox, tmp_path: Path, monkeypatch) -> None:
    secret = tmp_path / "data" / "api_key"
    secret.parent.mkdir()
    secret.write_text("the server's key")
    monkeypatch.setenv("LOCALGEM_API_KEYS", "the server's key")
    result = sandbox(
        "import os\n"
        f"print(os.path.exists({str(secret)!r}), os.path.exists({str(tmp_path)!r}))\n"
        "print(sorted(k for k in os.environ if 'LOCALGEM' in k or 'KEY' in k))\n"
        "print(os.getuid() != 0, sorted(p for p in os.listdir('/proc') if p.isdigit())[:3])\n"
        "print(open('/proc/1/cmdline').read().split(chr(0))[0])"
    )
    assert result.outcome == OK, result
    lines = result.stdout.splitlines()
    assert lines[0] == "False False" and lines[1] == "[]"
    assert lines[2].startswith("True ['1', '2'")  # its own processes only: PID 1 is the sandbox's
    assert lines[3] == "bwrap"
    assert str(os.getpid()) not in result.stdout


def test_the_home_folders_are_not_there(sandbox) -> None:
    secret = Path.home() / f".localgem-sandbox-test-{os.getpid()}"
    secret.write_text("private")
    try:
        result = sandbox(f"print(open({str(secret)!r}).read())")
    finally:
        secret.unlink()
    assert result.outcome == FAILED and "No such file" in result.stderr


def test_an_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    box = Sandbox(dataclasses.replace(LIMITS, wall_seconds=120), warm=0)  # the CPU limit comes first, however busy
    result = asyncio.run(box.run("print('started', flush=True)\nwhile True:\n    pass"))
    assert result.outcome == DEADLINE and result.stdout == "started\n"
    assert "CPU time" in result.output


def test_sleeping_forever_is_stopped_by_the_wall_clock(sandbox) -> None:
    result = sandbox("import time; time.sleep(60)")
    assert result.outcome == DEADLINE and "ran longer than 4 s" in result.output


def test_a_fork_bomb_is_contained(sandbox) -> None:
    result = sandbox("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert result.outcome == DEADLINE
    after = sandbox("print('still here')")
    assert (after.outcome, after.stdout) == (OK, "still here\n")


def test_huge_output_is_cut_and_the_code_stopped(sandbox) -> None:
    result = sandbox("while True:\n    print('x' * 1000)")
    assert result.outcome == FAILED and len(result.stdout) <= LIMITS.output_bytes
    assert "more than 4096 bytes of output" in result.output


def test_memory_is_limited(sandbox) -> None:
    result = sandbox("block = bytearray(4 << 30)")
    assert result.outcome == FAILED and "MemoryError" in result.stderr


def test_a_huge_file_is_limited(sandbox) -> None:
    result = sandbox("open('big', 'wb').write(b'x' * (200 << 20))")
    assert result.outcome != OK


def test_runs_beside_a_misbehaving_one_are_unaffected(sandbox) -> None:
    async def both(box_run):
        return await asyncio.gather(box_run("while True: pass"), box_run("print(sum(range(10)))"))

    box = Sandbox(LIMITS, warm=0)
    loud, quiet = asyncio.run(both(box.run))
    assert loud.outcome == DEADLINE and (quiet.outcome, quiet.stdout) == (OK, "45\n")


def test_each_run_starts_fresh(sandbox) -> None:
    sandbox("open('left_behind', 'w').write('x'); open('/tmp/also', 'w').write('x')")
    result = sandbox("import os; print(os.listdir('.'), os.listdir('/tmp'))")
    assert result.stdout.startswith("[] ["), result.stdout
    assert "also" not in result.stdout


def test_figures_come_back_as_png(sandbox) -> None:
    result = sandbox(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9]); plt.show()\n"
        "plt.figure(); plt.bar(['a'], [1]); plt.savefig('bars.png')\n"
    )
    assert result.outcome == OK, result
    assert [image.name for image in result.images] == ["figure_001.png", "bars.png"]
    assert all(image.data.startswith(b"\x89PNG") and image.mime_type == "image/png" for image in result.images)


def test_without_bubblewrap_the_probe_says_so(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "bubblewrap" in (Sandbox(warm=0).probe() or "")
