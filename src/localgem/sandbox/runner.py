"""Running untrusted Python under bubblewrap: one fresh process per run, never ``exec`` in the server.

Each sandbox has its own network namespace (no network at all), PID, IPC and UTS namespaces, a root of
its own in which only the system's programs and libraries and the Python installation are visible,
read-only, a fresh writable working directory, and a private ``/tmp``. Nothing else of the host is
there: not ``/etc``, not the data directory, not the home directories. When the server runs as root the
code runs as a user of its own (one uid per live sandbox) with no capabilities, so ``RLIMIT_NPROC``
bounds its processes (fork bombs); otherwise bubblewrap makes an unprivileged user namespace. CPU time,
wall time, memory, file size and output are limited. If bubblewrap cannot run here, ``probe`` says why
and there is no code execution: never a fallback without the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HARNESS = Path(__file__).with_name("harness.py")
READY = b"\x00localgem-sandbox-ready\n"  # as harness.READY (the harness imports nothing of localgem)
#: Where things are inside the sandbox.
WORKDIR = "/workspace"
FIGURES = "/sandbox/figures"
INNER_HARNESS = "/sandbox/harness.py"
#: The libraries imported while a process waits in the warm pool (each optional).
PREIMPORT = ("numpy", "pandas", "scipy", "sympy", "matplotlib", "matplotlib.pyplot")
#: Sandbox uids: above any a distribution hands out to people or services; each server process takes a
#: window of its own in it (by its pid), so that two servers on one host never share a process limit.
FIRST_UID = 1_000_000
UIDS_PER_PROCESS = 256
OK = "OUTCOME_OK"
FAILED = "OUTCOME_FAILED"
DEADLINE = "OUTCOME_DEADLINE_EXCEEDED"


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 30  # as Google's code execution
    wall_seconds: float = 30.0
    memory_bytes: int = 2 << 30  # address space (RLIMIT_AS)
    processes: int = 64  # threads count too
    output_bytes: int = 64 << 10  # stdout + stderr
    file_bytes: int = 64 << 20  # the largest file the code may write
    tmp_bytes: int = 256 << 20  # the private /tmp
    figures: int = 8
    image_bytes: int = 8 << 20  # a larger image file is not sent back


@dataclass(frozen=True)
class InputFile:
    """A file of the request, put in the working directory before the code runs."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Image:
    name: str
    mime_type: str
    data: bytes


@dataclass(frozen=True)
class Execution:
    outcome: str  # OUTCOME_OK | OUTCOME_FAILED | OUTCOME_DEADLINE_EXCEEDED
    stdout: str
    stderr: str
    images: tuple[Image, ...] = ()
    #: Why the run ended other than by the code's own exit (time, output limit), in words.
    note: str = ""

    @property
    def output(self) -> str:
        """What Google's codeExecutionResult.output holds: stdout, and on failure what went wrong."""
        if self.outcome == OK and not self.note:
            return self.stdout
        text = self.stdout + self.stderr
        return text + (("\n" if text and not text.endswith("\n") else "") + self.note if self.note else "")


class SandboxUnavailable(RuntimeError):
    pass


_taken = 0  # uids of this process's window given to sandbox objects


def _uid_block(size: int) -> int:
    """The first of ``size`` uids no other sandbox object of this process (or, by its pid, of another
    process) uses; the window wraps around when a process makes very many sandbox objects."""
    global _taken
    if _taken + size > UIDS_PER_PROCESS:
        _taken = 0
    window = FIRST_UID + (os.getpid() % 16384) * UIDS_PER_PROCESS
    first, _taken = window + _taken, _taken + size
    return first


_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


@dataclass
class _Process:
    """A started sandbox waiting for its code on stdin (cold: started for this run; warm: from the pool)."""

    process: asyncio.subprocess.Process
    folder: Path
    uid: int | None
    ready: bool = False  # it said it waits for code (see harness.READY)

    async def wait_ready(self, timeout: float) -> bool:
        if not self.ready:
            assert self.process.stdout is not None
            with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError):
                said = await asyncio.wait_for(self.process.stdout.readexactly(len(READY)), timeout)
                self.ready = said == READY
        return self.ready

    @property
    def workdir(self) -> Path:
        return self.folder / "workspace"

    @property
    def figures(self) -> Path:
        return self.folder / "figures"


@dataclass
class Sandbox:
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    #: Processes started ahead (imports done), each used for one run only.
    warm: int = 1
    #: Runs at once; more wait.
    concurrency: int = 4
    python: str = sys.executable

    def __post_init__(self) -> None:
        self._root = os.geteuid() == 0
        # Each sandbox object its own uids (a server may run several), as many as can be live at once.
        size = self.warm + self.concurrency + 1
        first = _uid_block(size)
        self._uids: deque[int] = deque(range(first, first + size))
        self._probe_uid = first + size - 1
        self._pool: deque[_Process] = deque()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._filling: asyncio.Task | None = None
        self._closed = False
        self._active = 0
        self.runs = 0  # code runs started (the metrics read it)

    # -- availability ---------------------------------------------------------------------------------

    def probe(self) -> str | None:
        """None if sandboxes run here; otherwise why not (in words, for the log and for 400s)."""
        if shutil.which("bwrap") is None:
            return "bubblewrap (bwrap) is not installed: install Debian's bubblewrap package"
        if shutil.which("prlimit") is None or shutil.which("nice") is None:
            return "prlimit and nice (util-linux, coreutils) are needed to limit a sandbox's resources"
        folder = Path(tempfile.mkdtemp(prefix="localgem-sandbox-"))
        uid = self._probe_uid if self._root else None
        try:
            self._prepare(folder, uid)
            result = subprocess.run(
                self._command(folder, uid, preimport=()),
                input=b"print(6 * 7)",
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap cannot run here: {exc}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if result.returncode != 0 or result.stdout.removeprefix(READY).strip() != b"42":
            return (
                "bubblewrap cannot run here: " + (result.stderr.decode(errors="replace").strip() or "no output")[-300:]
            )
        return None

    # -- running --------------------------------------------------------------------------------------

    async def run(self, code: str, files: Sequence[InputFile] = ()) -> Execution:
        async with self._slots:
            self.runs += 1
            self._active += 1
            started = self._pool.popleft() if self._pool else await self._start(())  # cold: imports on demand
            try:
                return await self._execute(started, code, files)
            finally:
                await self._dispose(started)
                self._active -= 1
                if self._active == 0:
                    self._refill()  # only when idle: warming (imports) never competes with code running

    async def start(self) -> None:
        """Fill the warm pool now (in the background). A server does not: its pool fills after the first
        run, so that a server whose requests never run code never spends the imports."""
        self._refill()

    async def close(self) -> None:
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(BaseException):
                await self._filling
        while self._pool:
            await self._dispose(self._pool.popleft())

    def _refill(self) -> None:
        if self._closed or self.warm <= 0 or (self._filling is not None and not self._filling.done()):
            return
        self._filling = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        while not self._closed and len(self._pool) < self.warm and self._uids:
            try:
                started = await self._start(PREIMPORT)
            except OSError:
                return
            try:
                ready = await started.wait_ready(60)
            except asyncio.CancelledError:  # closing: the process goes with it
                await asyncio.shield(self._dispose(started))
                raise
            if not ready or self._closed:
                await self._dispose(started)
                return
            self._pool.append(started)

    async def _start(self, preimport: Sequence[str]) -> _Process:
        uid = self._uids.popleft() if self._root else None
        folder = Path(tempfile.mkdtemp(prefix="localgem-sandbox-"))
        try:
            self._prepare(folder, uid)
            process = await asyncio.create_subprocess_exec(
                *self._command(folder, uid, preimport),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            if uid is not None:
                self._uids.append(uid)
            raise
        return _Process(process, folder, uid)

    async def _execute(self, started: _Process, code: str, files: Sequence[InputFile]) -> Execution:
        before = set()
        for file in files:
            path = started.workdir / file.name
            path.write_bytes(file.data)
            path.chmod(0o644)
            before.add(file.name)
        process = started.process
        if not await started.wait_ready(self.limits.wall_seconds):
            _kill(process)
            stderr = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
            return Execution(FAILED, "", stderr, note="[The sandbox did not start.]")
        output = _Output(self.limits.output_bytes)
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.create_task(output.read(process.stdout, "stdout", process)),
            asyncio.create_task(output.read(process.stderr, "stderr", process)),
        ]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(code.encode())
            await process.stdin.drain()
            process.stdin.close()
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), self.limits.wall_seconds)
        except TimeoutError:
            timed_out = True
            _kill(process)
            await process.wait()
        await asyncio.gather(*readers)
        status = process.returncode
        if status is not None and status > 128:  # bwrap exits 128 + N when the code died of signal N
            status = 128 - status
        if timed_out or status in (-signal.SIGXCPU, -signal.SIGKILL) and not output.overflowed:
            seconds = self.limits.wall_seconds if timed_out else self.limits.cpu_seconds
            kind = "ran longer" if timed_out else "used more CPU time"
            return Execution(
                DEADLINE, output.text("stdout"), output.text("stderr"), note=_note(f"{kind} than {seconds:g} s")
            )
        images = tuple(self._images(started, before))
        if output.overflowed:
            note = _note(f"wrote more than {self.limits.output_bytes} bytes of output")
            return Execution(FAILED, output.text("stdout"), output.text("stderr"), images, note)
        outcome = OK if status == 0 else FAILED
        note = "" if status is not None and status >= 0 else _note(f"was stopped by signal {-(status or 0)}")
        return Execution(outcome, output.text("stdout"), output.text("stderr"), images, note)

    def _images(self, started: _Process, inputs: set[str]) -> list[Image]:
        """Figures shown or left open, then image files the code wrote in its working directory."""
        found = sorted(started.figures.glob("*.png"))
        found += sorted(
            p
            for p in started.workdir.iterdir()
            if p.is_file() and not p.is_symlink() and p.suffix.lower() in _IMAGE_TYPES and p.name not in inputs
        )
        images = []
        for path in found:
            with contextlib.suppress(OSError):
                if len(images) < self.limits.figures and path.stat().st_size <= self.limits.image_bytes:
                    images.append(Image(path.name, _IMAGE_TYPES[path.suffix.lower()], path.read_bytes()))
        return images

    async def _dispose(self, started: _Process) -> None:
        if started.process.returncode is None:
            _kill(started.process)
            await started.process.wait()
        await asyncio.to_thread(shutil.rmtree, started.folder, True)
        if started.uid is not None:
            self._uids.append(started.uid)

    # -- the sandbox itself -----------------------------------------------------------------------------

    def _prepare(self, folder: Path, uid: int | None) -> None:
        for name in ("workspace", "figures"):
            (folder / name).mkdir()
            if uid is not None:
                os.chown(folder / name, uid, uid)
            (folder / name).chmod(0o755)  # the folder above is the host's 0700 one

    def _command(self, folder: Path, uid: int | None, preimport: Sequence[str]) -> list[str]:
        args = [
            *self._limits(),
            "bwrap",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
        ]
        if uid is not None:
            # Root makes no user namespace: the harness needs these two to become ``uid``, then has none.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user"]
        for system in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
            if os.path.islink(system):
                args += ["--symlink", os.readlink(system), system]
            elif os.path.isdir(system):
                args += ["--ro-bind", system, system]
        if os.path.isdir("/etc/fonts"):  # fontconfig's settings, for matplotlib's text
            args += [*_parents("/etc/fonts"), "--ro-bind", "/etc/fonts", "/etc/fonts"]
        # /tmp first: a Python installed under /tmp (a virtual environment there) is bound on top of it.
        args += ["--perms", "1777", "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        for tree in _python_trees(self.python):
            args += _parents(tree) + ["--ro-bind", tree, tree]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "0755",
            "--dir",
            "/sandbox",
            "--ro-bind",
            str(HARNESS),
            INNER_HARNESS,
            "--bind",
            str(folder / "figures"),
            FIGURES,
            "--bind",
            str(folder / "workspace"),
            WORKDIR,
            "--chdir",
            WORKDIR,
            "--clearenv",
        ]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": "/tmp/matplotlib",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "SANDBOX_UID": str(uid or 0),
            "SANDBOX_PREIMPORT": ",".join(preimport),
            "SANDBOX_FIGURES": FIGURES,
            "SANDBOX_CPU_SECONDS": str(self.limits.cpu_seconds),
        }
        for name, value in env.items():
            args += ["--setenv", name, value]
        return [*args, self.python, "-I", "-B", "-u", INNER_HARNESS]

    def _limits(self) -> list[str]:
        """prlimit and nice before bwrap: limits the sandbox inherits (the harness lowers the CPU limit
        further). Set by a program, not in a ``preexec_fn``, which is not safe in a server with threads."""
        limits = self.limits
        # The imports of the warm pool, then the code's own CPU time: past this the kernel kills it.
        cpu = limits.cpu_seconds * 2 + 30
        processes = limits.processes if self._root else _processes_of(os.getuid()) + limits.processes
        return [
            "prlimit",
            f"--as={limits.memory_bytes}",
            f"--fsize={limits.file_bytes}",
            "--core=0",
            f"--cpu={cpu}",
            f"--nproc={processes}",  # not root: the user's own processes count too
            "--",
            "nice",
            "-n",
            "5",
        ]


@dataclass
class _Output:
    limit: int
    overflowed: bool = False
    _chunks: dict[str, list[bytes]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    _size: int = 0

    async def read(self, stream: asyncio.StreamReader, name: str, process: asyncio.subprocess.Process) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - self._size
            if room <= 0:
                continue  # drained while the process is being killed
            self._chunks[name].append(chunk[:room])
            self._size += min(len(chunk), room)
            if len(chunk) > room:
                self.overflowed = True
                _kill(process)

    def text(self, name: str) -> str:
        return b"".join(self._chunks[name]).decode("utf-8", errors="replace")


def _note(what: str) -> str:
    return f"[The code {what} and was stopped.]"


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _python_trees(python: str) -> list[str]:
    """The folders the interpreter needs: its installation and, for a virtual environment, the environment."""
    trees = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    real = os.path.realpath(python)
    trees.add(os.path.dirname(os.path.dirname(real)))
    system = ("/usr", "/lib", "/lib64", "/bin", "/sbin")
    kept = sorted(t for t in trees if not any(t == s or t.startswith(s + "/") for s in system))
    return [t for t in kept if not any(t != o and t.startswith(o + "/") for o in kept)]


def _parents(tree: str) -> list[str]:
    """Folders above a bound tree, made readable by everyone (the host's may not be, e.g. /root)."""
    args: list[str] = []
    path = Path(tree)
    for parent in reversed(path.parents[:-1]):
        if str(parent) != "/tmp":  # the sandbox's own, already there (and open to all)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count
