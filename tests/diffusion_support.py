"""Tiny Stable Diffusion pipelines for tests: random weights built from configs, a tokenizer built in memory.

diffusers' own test helpers fetch a tokenizer from the hub; here the CLIP tokenizer is
made from a byte-level vocabulary written to a temp folder, so nothing is downloaded.
The components are small enough that a 2-step run at 32–64 px takes milliseconds on
a CPU, yet they go through the real pipeline classes and the real loading code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CROSS_ATTENTION_DIM = 32


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's byte → printable character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer with a byte-level vocabulary and no merges (every character is a token)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                         model_max_length=77)


def tiny_text_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPTextConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos, pad_token_id=eos,
        hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer) + 2, max_position_embeddings=77,
    )
    return CLIPTextModel(config)


def tiny_unet(in_channels: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM, attention_head_dim=8,
    )


def tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )


def tiny_controlnet() -> Any:
    from diffusers import ControlNetModel

    return ControlNetModel(
        block_out_channels=(32, 64), layers_per_block=1, in_channels=4, cross_attention_dim=CROSS_ATTENTION_DIM,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), conditioning_embedding_out_channels=(16, 32),
        attention_head_dim=8,
    )


def _scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                         clip_sample=False, set_alpha_to_one=False)


@dataclass(frozen=True)
class TinyModels:
    """Folders of saved tiny pipelines, one per model setting."""

    inpaint: Path
    base: Path
    ip2p: Path
    controlnet: Path

    def settings(self) -> dict[str, str]:
        return {"inpaint_model": str(self.inpaint), "base_model": str(self.base), "ip2p_model": str(self.ip2p),
                "controlnet_model": str(self.controlnet)}


def build_tiny_models(root: Path, seed: int = 0) -> TinyModels:
    """Build and ``save_pretrained`` an inpainting, a base, an InstructPix2Pix pipeline and a ControlNet."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(root / "tokenizer-src")
    text_encoder, vae = tiny_text_encoder(tokenizer), tiny_vae()
    common = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "safety_checker": None,
              "feature_extractor": None, "requires_safety_checker": False}
    models = TinyModels(root / "inpaint", root / "base", root / "ip2p", root / "controlnet")
    StableDiffusionInpaintPipeline(unet=tiny_unet(9), scheduler=_scheduler(), **common).save_pretrained(models.inpaint)
    StableDiffusionPipeline(unet=tiny_unet(4), scheduler=_scheduler(), **common).save_pretrained(models.base)
    StableDiffusionInstructPix2PixPipeline(unet=tiny_unet(8), scheduler=_scheduler(), **common).save_pretrained(models.ip2p)
    tiny_controlnet().save_pretrained(models.controlnet)
    return models


def tiny_lora(base: Path, out: Path, *, rank: int = 4, seed: int = 1) -> Path:
    """A LoRA adapter for the base model's UNet with non-zero random weights, saved as one .safetensors file."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name="film.safetensors")
    return out / "film.safetensors"


def photo(height: int = 48, width: int = 64, seed: int = 7) -> np.ndarray:
    """A small test photo: a flat background, a red block, a little noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = (70, 110, 150)
    image[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = (190, 60, 50)
    return np.clip(image.astype(int) + rng.integers(-12, 12, image.shape), 0, 255).astype(np.uint8)


def generative_settings(tmp_path: Path, models: TinyModels, **overrides: Any) -> Any:
    """Worker settings on a SQLite file with the tiny models configured (generative tests need no PostgreSQL:
    the queue is tested on both elsewhere, and diffusion time is what they cost)."""
    from core.settings import load_settings

    values: dict[str, Any] = {
        "data_dir": tmp_path / "data", "database_url": f"sqlite:///{tmp_path / 'chatedit.db'}",
        "job_lease_seconds": 5.0, "worker_heartbeat_seconds": 0.2, "worker_poll_seconds": 0.1,
        "worker_shutdown_grace_seconds": 2.0, "retry_base_delay_seconds": 0.2, **models.settings(),
    }
    values.update(overrides)
    return load_settings(**values)


#: Person's settings that keep every run tiny: 2 steps at most 64 px.
FAST = {"steps": 2, "max_side": 64, "face_size": 64}
