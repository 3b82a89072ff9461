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
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

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


# -- single-file checkpoints in the original (LDM / A1111) layout ------------------------------------------------

_LDM_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
               "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_LDM_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _ldm_resnet(rest: str, names: dict[str, str]) -> str:
    first, _, tail = rest.partition(".")
    return f"{names.get(first, first)}.{tail}"


def _ldm_unet_key(key: str, config: Any, model: str = "unet") -> str:
    """A diffusers UNet2DConditionModel key → its name under ``model.diffusion_model.`` in an SD 1.x checkpoint.

    The inverse of diffusers' ``convert_ldm_unet_checkpoint`` (which diffusers does not ship): LDM numbers its
    ``input_blocks``/``output_blocks`` flat, ``layers_per_block`` (+1 going up) per level plus a down/upsampler.
    """
    import re

    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING[model]["layers"]
    if key in top:
        return top[key]
    per_level_down, per_level_up = config.layers_per_block + 1, config.layers_per_block + 1
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_level_down + layer
        return f"input_blocks.{index}.0.{_ldm_resnet(rest, _LDM_RESNET)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * per_level_down + config.layers_per_block}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_ldm_resnet(m[2], _LDM_RESNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_level_up + layer
        return f"output_blocks.{index}.0.{_ldm_resnet(rest, _LDM_RESNET)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        has_attention = "CrossAttn" in config.up_block_types[block]
        return f"output_blocks.{block * per_level_up + config.layers_per_block}.{2 if has_attention else 1}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def _ldm_controlnet_key(key: str, config: Any) -> str:
    """A diffusers ControlNetModel key → its name under ``control_model.`` (the inverse of
    ``convert_controlnet_checkpoint``): the UNet's encoder half plus the zero convolutions and the hint encoder."""
    import re

    if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if m := re.fullmatch(r"controlnet_mid_block\.(.+)", key):
        return f"middle_block_out.0.{m[1]}"
    if m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
    # conv_in/conv_out of the hint encoder are input_hint_block.0/.14: diffusers reads conv_out from index 14
    # whatever the number of blocks (SD's hint encoder has 6), so a smaller one is written with a gap.
    return _ldm_unet_key(key, config, "controlnet")


def _ldm_vae_key(key: str, config: Any) -> str:
    """A diffusers AutoencoderKL key → its name under ``first_stage_model.`` (the inverse of ``convert_ldm_vae_checkpoint``)."""
    import re

    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in top:
        return top[key]
    shortcut = {"conv_shortcut": "nin_shortcut"}
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_ldm_resnet(m[3], shortcut)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    levels = len(config.up_block_types)
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_ldm_resnet(m[3], shortcut)}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_ldm_resnet(m[3], shortcut)}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{_LDM_VAE_ATTENTION[m[2]]}.{m[3]}"
    raise KeyError(f"no LDM name for VAE key {key}")


def ldm_state_dict(pipe: Any) -> dict[str, Any]:
    """An SD 1.x pipeline's UNet, VAE and CLIP text encoder as one state dict in the original LDM layout,
    the layout of A1111 / civitai ``.safetensors`` checkpoints (``model.diffusion_model.``, ``first_stage_model.``,
    ``cond_stage_model.transformer.text_model.``)."""
    out: dict[str, Any] = {}
    for key, value in pipe.unet.state_dict().items():
        out["model.diffusion_model." + _ldm_unet_key(key, pipe.unet.config)] = value
    for key, value in pipe.vae.state_dict().items():
        name = _ldm_vae_key(key, pipe.vae.config)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention projections are 1×1 convolutions
        out["first_stage_model." + name] = value
    for key, value in pipe.text_encoder.state_dict().items():
        out["cond_stage_model.transformer.text_model." + key.removeprefix("text_model.")] = value
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def ldm_controlnet_state_dict(controlnet: Any) -> dict[str, Any]:
    """A ControlNet as an original-layout state dict (``control_model.``), as in ``control_v11p_sd15_canny.pth``."""
    return {"control_model." + _ldm_controlnet_key(k, controlnet.config): v.detach().contiguous().clone()
            for k, v in controlnet.state_dict().items()}


def write_single_file_controlnet(controlnet_dir: Path, checkpoint: Path, *, config_dir: Path | None = None) -> Path:
    """Write the ControlNet saved in ``controlnet_dir`` as one original-layout ``.safetensors`` file, and (when
    ``config_dir`` is given) its ``config.json`` beside it."""
    import shutil

    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_file(ldm_controlnet_state_dict(ControlNetModel.from_pretrained(controlnet_dir)), str(checkpoint))
    if config_dir is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(controlnet_dir / "config.json", config_dir / "config.json")
    return checkpoint


def write_single_file(pipeline_dir: Path, checkpoint: Path, *, config_dir: Path | None = None) -> Path:
    """Write the pipeline saved in ``pipeline_dir`` as one original-layout ``.safetensors`` checkpoint, and (when
    ``config_dir`` is given) its diffusers configs and tokenizer without any weights, as a person would download
    them (``hf download REPO --include "*.json" "*.txt"``)."""
    import shutil

    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    pipe = DiffusionPipeline.from_pretrained(pipeline_dir)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_file(ldm_state_dict(pipe), str(checkpoint))
    if config_dir is not None:
        for path in pipeline_dir.rglob("*"):
            if path.is_file() and path.suffix in {".json", ".txt"}:
                target = config_dir / path.relative_to(pipeline_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return checkpoint
