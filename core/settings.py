"""The one Settings object: environment variables ``CHATEDIT_*`` over ``chatedit.toml`` over defaults.

The TOML file is ``./chatedit.toml`` unless ``CHATEDIT_CONFIG`` names another; keys are
the field names (``data_dir = "/srv/chatedit"``). Every room reads configuration from
here, never from ``os.environ`` directly.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

#: What every setting's environment variable starts with.
ENV_PREFIX = "CHATEDIT_"
CONFIG_ENV = "CHATEDIT_CONFIG"
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_CONFIG_FILE = "chatedit.toml"
LANES = ("interactive", "gpu", "batch")
#: Ways to sign in besides ``off``: ``CHATEDIT_AUTH`` names one or both.
AUTH_METHODS = ("local", "oidc")


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the setting and what to do."""


class Settings(BaseSettings):
    # allow_inf_nan=False: "inf" or "nan" in a float setting is refused, never a worker that waits forever.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True,
                                      allow_inf_nan=False)

    data_dir: Path = Field(Path("data"), description="Where the SQLite file, blobs and models live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default a SQLite file in the data dir. PostgreSQL: postgresql+psycopg://..."
    )
    blob_store: Literal["fs", "db"] = Field("fs", description="Image bytes on disk (fs) or in the database (db).")
    database_connect_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="PostgreSQL: give up connecting after this long (a server that never answers)."
    )
    database_statement_timeout_seconds: float = Field(
        300.0, ge=0, le=86_400,
        description="PostgreSQL: the server cancels a statement running longer than this (0: never).",
    )

    # Queue and worker.
    job_lease_seconds: float = Field(
        30.0, gt=0, le=3600, description="A running job's lease; a silent worker loses it after this."
    )
    worker_heartbeat_seconds: float = Field(
        5.0, gt=0, le=600, description="How often a worker renews its leases (less than the lease)."
    )
    worker_poll_seconds: float = Field(
        1.0, gt=0, le=600, description="Longest idle wait before a worker looks for jobs again."
    )
    worker_shutdown_grace_seconds: float = Field(
        30.0, ge=0, le=86_400, description="On SIGTERM, how long running jobs may finish."
    )
    worker_batch_window_seconds: float = Field(
        0.02, ge=0, le=1.0,
        description="A slot claims as many jobs as it expects to finish in this time (short jobs only; 0: one at a time).",
    )
    job_max_attempts: int = Field(3, ge=1, le=100, description="Attempts per job before it fails for good.")
    retry_base_delay_seconds: float = Field(
        2.0, ge=0, le=86_400, description="First retry delay; doubles each attempt."
    )
    retry_max_delay_seconds: float = Field(300.0, ge=0, le=86_400, description="Longest retry delay.")
    sqlite_busy_timeout_ms: int = Field(
        15_000, ge=0, le=3_600_000, description="How long SQLite writers wait for the lock."
    )
    max_queued_jobs_per_person: int = Field(
        50, ge=0, le=1_000_000,
        description="Most jobs one person may have queued (waiting, not yet running) at once; more are refused "
                    "with a sentence. Retries and re-queues are never refused. 0: no limit.",
    )

    # Uploads (core.images reads these as its caps).
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, ge=1, le=2**31, description="Largest upload accepted, checked before decoding."
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, le=1_000_000_000, description="Largest image accepted, in pixels (decompression-bomb guard)."
    )
    max_image_side: int = Field(
        12_000, ge=1, le=1_000_000,
        description="Longest side of an image accepted, in pixels, checked before decoding (edge work grows with it).",
    )
    max_aspect_ratio: float = Field(
        20.0, ge=1.0, description="Most an image's longest side may exceed its shortest, as a ratio (20: 20 to 1)."
    )
    max_job_memory_mb: int = Field(
        4096, ge=1,
        description="Most memory one edit may need, estimated from its image size and commands before it is queued or run.",
    )

    # Backends (each has an offline default).
    planner: Literal["rules", "openai", "local"] = Field(
        "rules", description="Planner that turns requests into commands: rules (offline, bilingual), openai, local."
    )
    segmenter: Path | None = Field(
        None, description="Segmenter: an ONNX file made by `chatedit models export-segmenter`, or a composite segmenter's "
                          "folder; none: the embedded default in DATA_DIR/models/chatedit-parts when installed."
    )
    auto_install_segmenter: bool = Field(
        True, description="`chatedit serve` installs the embedded default segmenter (MediaPipe's models from PyPI, "
                          "converted to ONNX) when no segmenter is set and it is missing."
    )

    # LLM planners: any OpenAI-compatible server, or a local transformers model.
    openai_base_url: str | None = Field(None, description="OpenAI-compatible API base URL (OpenAI, vLLM, Ollama, llama.cpp, LM Studio); none: OpenAI.")
    openai_api_key: str | None = Field(None, description="API key; OPENAI_API_KEY is used when this is not set.")
    openai_model: str | None = Field(None, description="Chat model of the openai planner, e.g. gpt-4o-mini.")
    openai_structured_output: Literal["auto", "json_schema", "prompt"] = Field(
        "auto", description="Structured output with a strict JSON Schema, or the prompt + extraction path (auto: detect)."
    )
    openai_timeout_seconds: float = Field(60.0, gt=0, le=3600, description="Timeout of one API request.")
    openai_max_retries: int = Field(3, ge=0, le=20, description="Retries with backoff on 429 and 5xx.")
    vision_model: str | None = Field(None, description="Vision-capable chat model for Advice; none: Advice is off.")
    local_llm: str | None = Field(None, description="Local planner model: a .gguf file, an HF id or a local directory "
                                                    "(none: the file `chatedit models install-planner` installed).")
    local_llm_adapter: str | None = Field(None, description="Optional peft LoRA adapter for the local planner (the fine-tuned planner).")

    # Generative editing: each an HF id, a local diffusers directory or a single .safetensors file.
    inpaint_model: str | None = Field(None, description="Inpainting model (SD 1.5 or SDXL) for change and remove.")
    controlnet_model: str | None = Field(None, description="ControlNet (canny) that keeps outlines while inpainting.")
    ip2p_model: str | None = Field(None, description="InstructPix2Pix model for instruct.")
    base_model: str | None = Field(None, description="Base model for face retouch, style (img2img) and generate (txt2img).")
    lora_dir: Path | None = Field(None, description="Folder of LoRA adapters (.safetensors) offered in settings.")
    torch_compile: bool = Field(False, description="torch.compile the UNet on CUDA (slow first run, faster after).")
    face_analysis_dir: Path | None = Field(None, description="insightface model folder (e.g. buffalo_l) for swap_face.")
    face_swap_model: Path | None = Field(None, description="inswapper ONNX file for swap_face.")
    openai_image_model: str | None = Field(None, description="Image-edit fallback model (e.g. gpt-image-1, dall-e-2); none: no fallback.")

    # Evaluation: job payloads name a dataset, the worker resolves the name here (a payload never names a file).
    eval_datasets: dict[str, Path] = Field(
        default_factory=dict,
        description='Datasets an eval_planner job may name, as JSON {"name": "file.json"} ("seed" is built in).',
    )

    # Accounts and sign-in.
    auth: str = Field(
        "off",
        description="How people sign in: off (one person, the local admin), local (accounts with passwords), "
                    "oidc (Streamlit's st.login with providers in .streamlit/secrets.toml), or local,oidc.",
    )
    allow_open_access: bool = Field(
        False, description="Let `chatedit serve` listen beyond the loopback address while CHATEDIT_AUTH=off "
                           "(anyone who reaches the port acts as the local admin).",
    )
    session_hours: int = Field(
        12, ge=1, le=720, description="How long a sign-in lasts before the person signs in again, in hours."
    )
    default_visibility: Literal["private", "team"] = Field(
        "private", description="Who sees a new history: private (its owner and admins) or team.",
    )
    oidc_default_role: Literal["admin", "editor", "reviewer", "viewer"] = Field(
        "viewer", description="The role of a person who signs in with OIDC for the first time.",
    )
    oidc_role_claim: str | None = Field(
        None, description="An ID-token claim (a string or a list) whose value picks the role through "
                          "CHATEDIT_OIDC_ROLE_MAP, e.g. groups.",
    )
    oidc_role_map: dict[str, Literal["admin", "editor", "reviewer", "viewer"]] = Field(
        default_factory=dict, description='Claim value to role, as JSON {"chatedit-admins": "admin"}; the first match wins.',
    )
    oidc_allowed_domains: list[str] = Field(
        default_factory=list, description='E-mail domains that may sign in with OIDC, as JSON ["example.com"]; '
                                          "empty: every domain.",
    )

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
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            # Not the parser's message: it may quote the URL, password and all.
            raise ValueError("is not a URL this program can read (check the host, the port and any brackets)") from None
        if port == 0:
            raise ValueError("port 0 is not a port a server listens on")
        if value.startswith("sqlite:") and parts.path in ("", "/"):
            raise ValueError("a SQLite URL names a file: sqlite:///PATH")
        return value

    @field_validator("auth")
    @classmethod
    def _auth_methods(cls, value: str) -> str:
        words = {w.strip().lower() for w in value.replace("+", ",").split(",") if w.strip()}
        if not words or words == {"off"}:
            return "off"
        unknown = words - set(AUTH_METHODS)
        if unknown or "off" in words:
            raise ValueError("use off, local, oidc or local,oidc")
        return ",".join(m for m in AUTH_METHODS if m in words)

    @field_validator("oidc_allowed_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value if d.strip()]

    @property
    def auth_methods(self) -> frozenset[str]:
        """The ways to sign in that are on ({"local"}, {"oidc"}, both); empty while sign-in is off."""
        return frozenset() if self.auth == "off" else frozenset(self.auth.split(","))

    @field_validator("eval_datasets")
    @classmethod
    def _dataset_names(cls, value: dict[str, Path]) -> dict[str, Path]:
        bad = [name for name in value if not _DATASET_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"dataset names are 1 to 64 letters, digits, '.', '_' or '-', not {bad[0]!r}")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.worker_heartbeat_seconds >= self.job_lease_seconds:
            raise ValueError(
                f"CHATEDIT_WORKER_HEARTBEAT_SECONDS ({self.worker_heartbeat_seconds:g}) must be less than "
                f"CHATEDIT_JOB_LEASE_SECONDS ({self.job_lease_seconds:g}), or leases run out between heartbeats"
            )
        if self.retry_max_delay_seconds < self.retry_base_delay_seconds:
            raise ValueError(
                f"CHATEDIT_RETRY_MAX_DELAY_SECONDS ({self.retry_max_delay_seconds:g}) must be at least "
                f"CHATEDIT_RETRY_BASE_DELAY_SECONDS ({self.retry_base_delay_seconds:g})"
            )
        return self

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
            what = "is not a file" if toml_file.exists() else "does not exist"
            raise SettingsError(f"{CONFIG_ENV} names {toml_file}, which {what}.")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and the TOML file; errors become one readable sentence each."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if err["loc"]:
                message = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"CHATEDIT_{str(err['loc'][0]).upper()}: {message}")
            else:  # a rule across settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
        raise SettingsError("Invalid configuration: " + "; ".join(problems) + ".") from None
    except SourceError as exc:
        # pydantic-settings could not decode a value (e.g. CHATEDIT_EVAL_DATASETS that is not JSON).
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"CHATEDIT_{field.group(1).upper()}" if field else "a setting"
        raise SettingsError(f"Invalid configuration: {name} cannot be read: give it as JSON.") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"The configuration file {_config_file()} is not valid TOML ({exc}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"The configuration file {_config_file()} cannot be read ({reason}).") from None


def environment_of(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process (a worker, the CLI) that must load exactly these settings.

    ``base`` (this process's environment by default) loses its own ``CHATEDIT_*`` variables
    first, so no other configuration leaks in; every setting is then written out, the
    database URL resolved, containers as JSON (how the variables are read back).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"{ENV_PREFIX}{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    env[f"{ENV_PREFIX}DATABASE_URL"] = settings.resolved_database_url
    return env


def _config_file() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting: the README table and `--help`."""
    rows = []
    for name, field in Settings.model_fields.items():
        value = field.get_default(call_default_factory=True)
        default = "" if value is None or value == {} else str(value)
        rows.append((f"CHATEDIT_{name.upper()}", default, field.description or ""))
    return rows
