"""The one Settings object: environment variables ``CHATEDIT_*`` over ``chatedit.toml`` over defaults.

The TOML file is ``./chatedit.toml`` unless ``CHATEDIT_CONFIG`` names another; keys are
the field names (``data_dir = "/srv/chatedit"``). Every room reads configuration from
here, never from ``os.environ`` directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "CHATEDIT_CONFIG"
DEFAULT_CONFIG_FILE = "chatedit.toml"
LANES = ("interactive", "gpu", "batch")


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the setting and what to do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATEDIT_", extra="ignore", validate_default=True)

    data_dir: Path = Field(Path("data"), description="Where the SQLite file, blobs and models live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default a SQLite file in the data dir. PostgreSQL: postgresql+psycopg://..."
    )
    blob_store: Literal["fs", "db"] = Field("fs", description="Image bytes on disk (fs) or in the database (db).")

    # Queue and worker.
    job_lease_seconds: float = Field(30.0, gt=0, description="A running job's lease; a silent worker loses it after this.")
    worker_heartbeat_seconds: float = Field(5.0, gt=0, description="How often a worker renews its leases.")
    worker_poll_seconds: float = Field(1.0, gt=0, description="Longest idle wait before a worker looks for jobs again.")
    worker_shutdown_grace_seconds: float = Field(30.0, ge=0, description="On SIGTERM, how long running jobs may finish.")
    worker_batch_window_seconds: float = Field(
        0.02, ge=0, le=1.0,
        description="A slot claims as many jobs as it expects to finish in this time (short jobs only; 0: one at a time).",
    )
    job_max_attempts: int = Field(3, ge=1, description="Attempts per job before it fails for good.")
    retry_base_delay_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles each attempt.")
    retry_max_delay_seconds: float = Field(300.0, ge=0, description="Longest retry delay.")
    sqlite_busy_timeout_ms: int = Field(15_000, ge=0, description="How long SQLite writers wait for the lock.")

    # Uploads (core.images reads these as its caps).
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Largest upload accepted, checked before decoding.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest image accepted, in pixels (decompression-bomb guard).")

    # Backends (each has an offline default).
    planner: Literal["rules", "openai", "local"] = Field(
        "rules", description="Planner that turns requests into commands: rules (offline, bilingual), openai, local."
    )
    segmenter: Path | None = Field(
        None, description="ONNX segmentation model (made by `chatedit models export-segmenter`); none: select by click and brush."
    )

    # LLM planners (issue 7): any OpenAI-compatible server, or a local transformers model.
    openai_base_url: str | None = Field(None, description="OpenAI-compatible API base URL (OpenAI, vLLM, Ollama, llama.cpp, LM Studio); none: OpenAI.")
    openai_api_key: str | None = Field(None, description="API key; OPENAI_API_KEY is used when this is not set.")
    openai_model: str | None = Field(None, description="Chat model of the openai planner, e.g. gpt-4o-mini.")
    openai_structured_output: Literal["auto", "json_schema", "prompt"] = Field(
        "auto", description="Structured output with a strict JSON Schema, or the prompt + extraction path (auto: detect)."
    )
    openai_timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one API request.")
    openai_max_retries: int = Field(3, ge=0, description="Retries with backoff on 429 and 5xx.")
    vision_model: str | None = Field(None, description="Vision-capable chat model for Advice; none: Advice is off.")
    local_llm: str | None = Field(None, description="Local planner model: an HF id or a local directory.")
    local_llm_adapter: str | None = Field(None, description="Optional peft LoRA adapter for the local planner (the fine-tuned planner).")

    # Generative editing (issue 6): each an HF id, a local diffusers directory or a single .safetensors file.
    inpaint_model: str | None = Field(None, description="Inpainting model (SD 1.5 or SDXL) for change and remove.")
    controlnet_model: str | None = Field(None, description="ControlNet (canny) that keeps outlines while inpainting.")
    ip2p_model: str | None = Field(None, description="InstructPix2Pix model for instruct.")
    base_model: str | None = Field(None, description="Base model for face retouch, style (img2img) and generate (txt2img).")
    lora_dir: Path | None = Field(None, description="Folder of LoRA adapters (.safetensors) offered in settings.")
    torch_compile: bool = Field(False, description="torch.compile the UNet on CUDA (slow first run, faster after).")
    face_analysis_dir: Path | None = Field(None, description="insightface model folder (e.g. buffalo_l) for swap_face.")
    face_swap_model: Path | None = Field(None, description="inswapper ONNX file for swap_face.")
    openai_image_model: str | None = Field(None, description="Image-edit fallback model (e.g. gpt-image-1, dall-e-2); none: no fallback.")

    # Serving.
    host: str = Field("127.0.0.1", description="Address `chatedit serve` binds.")
    port: int = Field(8501, ge=1, le=65535, description="Port of the web app.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log detail of the CLI and workers.")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if value.startswith("postgres:"):
            value = "postgresql+psycopg:" + value[len("postgres:"):]
        elif value.startswith("postgresql:"):
            value = "postgresql+psycopg:" + value[len("postgresql:"):]
        return value

    @field_validator("segmenter", "lora_dir", "face_analysis_dir", "face_swap_model", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``CHATEDIT_SEGMENTER=`` (empty) means not set, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("openai_base_url", "openai_api_key", "openai_model", "vision_model", "local_llm",
                     "local_llm_adapter", "inpaint_model", "controlnet_model", "ip2p_model", "base_model",
                     "openai_image_model", mode="before")
    @classmethod
    def _empty_text_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'chatedit.db').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
        if CONFIG_ENV in os.environ and not toml_file.is_file():
            raise SettingsError(f"{CONFIG_ENV} names {toml_file}, which does not exist.")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and the TOML file; errors become one readable sentence each."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"CHATEDIT_{name.upper()}: {err['msg']}")
        raise SettingsError("Invalid configuration: " + "; ".join(problems) + ".") from None


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting: the README table and `--help`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        rows.append((f"CHATEDIT_{name.upper()}", default, field.description or ""))
    return rows
