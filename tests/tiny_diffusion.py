"""Tiny diffusers pipelines with random weights, made from configs in code and saved as real pipeline folders
(``save_pretrained``): localgem loads and runs them as it would Stable Diffusion or a text-to-video model. No
weights are downloaded; the folders are a few MB and draw a 64×64 image in a fraction of a second."""

from __future__ import annotations

import json
from pathlib import Path

SIDE = 64  # the side they draw by default: UNet sample size 32 × VAE scale 2
#: The denoisers' shared shape: two levels, 32 and 64 channels, latents of 4 channels.
_UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    sample_size=SIDE // 2,
    in_channels=4,
    out_channels=4,
    cross_attention_dim=32,
    norm_num_groups=32,
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte ↔ printable character table, for a byte-level tokenizer vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _parts(folder: Path):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = _tokenizer(folder / "_tokenizer_source")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            projection_dim=32,
        )
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=SIDE,
        norm_num_groups=32,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def make_tiny_image_pipeline(folder: Path, steps: int = 2) -> Path:
    """A Stable Diffusion pipeline folder (text-to-image; image-to-image through diffusers' AutoPipeline)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_UNET,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False, **_parts(folder)
    )
    pipe.save_pretrained(str(folder))
    return folder


def make_tiny_video_pipeline(folder: Path) -> Path:
    """A text-to-video pipeline folder (ModelScope's TextToVideoSDPipeline, with a 3-D UNet)."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    unet = UNet3DConditionModel(
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        attention_head_dim=4,
        **_UNET,
    )
    TextToVideoSDPipeline(unet=unet, **_parts(folder)).save_pretrained(str(folder))
    return folder


def media_models(root: Path) -> list[dict]:
    """Model entries (settings) for the tiny image and video pipelines, built under ``root`` once."""
    image, video = root / "tiny-image", root / "tiny-video"
    if not (image / "model_index.json").exists():
        make_tiny_image_pipeline(image)
    if not (video / "model_index.json").exists():
        make_tiny_video_pipeline(video)
    return [
        {"id": "tiny-image", "task": "image", "path": str(image), "steps": 2},
        {"id": "tiny-video", "task": "video", "path": str(video), "steps": 2, "frames": 8, "fps": 8},
    ]
