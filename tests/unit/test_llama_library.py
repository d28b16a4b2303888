"""A llama.cpp build is named by its library files: kept KV state is read only by the build that wrote it."""

from __future__ import annotations

from pathlib import Path

from localgem.engines.llama.library import build_of, llama_build, loaded_llama_folder


def test_a_build_is_named_by_its_library_files(tmp_path: Path) -> None:
    (tmp_path / "libllama.so.0.5.0").write_bytes(b"llama")
    (tmp_path / "libllama.so").symlink_to("libllama.so.0.5.0")
    (tmp_path / "libggml-cpu.so").write_bytes(b"kernels")
    first = build_of(tmp_path)
    (tmp_path / "libmtmd.so").write_bytes(b"images")  # no part of the KV state
    assert build_of(tmp_path) == first
    (tmp_path / "libggml-cpu.so").write_bytes(b"other kernels")
    assert build_of(tmp_path) != first


def test_the_build_named_is_the_library_this_process_mapped() -> None:
    import llama_cpp  # noqa: F401  (loads libllama)

    mapped = {Path(line.split()[-1]) for line in open("/proc/self/maps") if "/libllama.so" in line}
    assert [path.parent.resolve() for path in mapped] == [loaded_llama_folder().resolve()]
    assert llama_build() == build_of(loaded_llama_folder()) != build_of(Path(__file__).parent)
