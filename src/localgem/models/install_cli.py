"""``localgem models list | install NAME | remove NAME``: the installer (``models.installer``) on a terminal, with a
tqdm progress bar (bytes, rate, ETA) per stage."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from localgem.models.installable import INSTALLABLE
from localgem.models.installer import Installer, Progress

_STAGES = {"download": "downloading", "verify": "verifying", "assemble": "assembling"}


def knows(name: str) -> bool:
    return name in INSTALLABLE


async def run(args: argparse.Namespace, installer: Installer) -> None:
    if args.action == "list":
        print_list(installer)
    elif args.action == "install":
        before = installer.state(installer.get(args.name))
        if before.installed and before.model.config is None:
            print(f"{args.name} is already installed ({before.where})")
            return
        bar = Bars()
        try:
            state = await installer.install(args.name, bar.update)
        finally:
            bar.close()
        served = f" as models/{state.model.config.id}" if state.model.config is not None else ""
        print(f"installed {state.model.name}{served} ({human(state.model.size)}, {state.where})")
        if state.model.setting:
            print(f"use it with the setting {state.model.setting.replace('<its folder>', state.where)}")
    else:
        for what in await installer.remove(args.id):
            print(f"removed {what}")


def print_list(installer: Installer) -> None:
    rows = [("NAME", "STATUS", "SIZE", "FOR", "DESCRIPTION")]
    for state in installer.states():
        model = state.model
        status = "builtin" if model.dependency and state.installed else "installed" if state.installed else "-"
        rows.append((model.name, status, human(model.size), model.purpose, model.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])


class Bars:
    """One tqdm bar per stage, on stderr (stdout keeps the result line)."""

    def __init__(self) -> None:
        self._stage = ""
        self._bar: tqdm | None = None

    def update(self, progress: Progress) -> None:
        if progress.stage != self._stage:
            self.close()
            self._stage = progress.stage
            if progress.stage in _STAGES:
                self._bar = tqdm(
                    total=progress.total,
                    desc=f"{_STAGES[progress.stage]:<11}",
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1000,  # as `models list` counts: MB, not MiB
                    file=sys.stderr,
                    mininterval=0.25,
                    dynamic_ncols=True,
                )
        if self._bar is not None:
            self._bar.update(progress.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
