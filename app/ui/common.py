"""What every page shares: the services of this installation, images for display, readable commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
import streamlit as st

from core.describe import describe
from core.errors import error_line
from core.settings import Settings, SettingsError, load_settings
from db.migrate import current_revision, head_revision
from jobs.errors import JobNotFound
from jobs.images import image_png, image_preview, image_thumbnail, working_rgb
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services


@st.cache_resource(show_spinner=False, max_entries=8)
def _services_for(settings_json: str) -> Services:
    # Keyed by every setting, so a test (or a changed setting) never reuses another's services.
    return Services.from_settings(Settings.model_validate_json(settings_json))


def get_services() -> Services:
    """This installation's services; stops the page with a sentence when settings or schema are unusable."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        st.error(str(exc))
        st.stop()
    services = _services_for(settings.model_copy(update={"data_dir": settings.data_dir.resolve()}).model_dump_json())
    try:
        revision = current_revision(services.database)
    except Exception as exc:  # noqa: BLE001 - any driver error means the same thing to a person
        st.error(f"The database cannot be reached ({error_line(exc)}). "
                 "Check CHATEDIT_DATABASE_URL and that the server is running.")
        st.stop()
    if revision != head_revision():
        st.error("The database schema is missing or older than this version of ChatEdit. "
                 "Run `chatedit init` (or start the app with `chatedit serve`, which does it).")
        st.stop()
    return services


@st.cache_data(max_entries=256, show_spinner=False)
def _png_cached(database_url: str, image_id: int, _services: Services) -> bytes:
    return image_png(_services, image_id)


def png_of(services: Services, image_id: int) -> bytes:
    """The stored PNG of an image (with its recipe when it is an edit's output); stored images never change."""
    return _png_cached(services.settings.resolved_database_url, image_id, services)


@st.cache_data(max_entries=256, show_spinner=False)
def _preview_cached(database_url: str, image_id: int, _services: Services) -> bytes:
    return image_preview(_services, image_id)


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail_cached(database_url: str, image_id: int, _services: Services) -> bytes:
    return image_thumbnail(_services, image_id)


def png_download(services: Services, image_id: int) -> Callable[[], bytes]:
    """A Download button's data: the full-size PNG with its recipe, read only when the person clicks.

    Handing the bytes themselves would make every run of the page copy and hash the whole file.
    """
    return lambda: image_png(services, image_id)


def preview_of(services: Services, image_id: int) -> bytes:
    """What the page shows of an image (a JPEG at most 1,280 px on the long side); Download buttons use ``png_of``."""
    return _preview_cached(services.settings.resolved_database_url, image_id, services)


def thumbnail_of(services: Services, image_id: int) -> bytes:
    """A gallery card's picture (a JPEG at most 384 px on the long side)."""
    return _thumbnail_cached(services.settings.resolved_database_url, image_id, services)


def rgb_of(services: Services, image_id: int) -> np.ndarray:
    """The image's working copy (at most 1,280 px on the long side, read-only): what the page's tools work on.

    Selections, clicks and overlays are made on it; the edit job scales them up to the full image.
    """
    return working_rgb(services, image_id)


def command_summary(item: Any) -> str:
    """A command as a person reads it (``core.describe``): "Brighten the whole image (+0.3)", never JSON."""
    return describe(item)


def when(value: Any) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M")


STATUS_ICONS = {JobStatus.QUEUED: ":material/schedule:", JobStatus.RUNNING: ":material/autorenew:",
                JobStatus.SUCCEEDED: ":material/check_circle:", JobStatus.FAILED: ":material/error:",
                JobStatus.CANCELLED: ":material/cancel:"}
#: How often a watched job is read again, in seconds.
POLL_S = 0.5


def job_progress(services: Services, job: JobRecord, doing: str) -> None:
    """A queued or running job's progress bar; a queued one says so when no worker serves its lane."""
    if job.status is JobStatus.QUEUED:
        heartbeat = max(15.0, 3 * services.settings.worker_heartbeat_seconds)
        alive = [w for w in services.queue.workers(alive_within_s=heartbeat) if job.lane in w.lanes]
        text = f"{doing}: waiting for a worker…" if alive else (
            f"{doing} is queued, but no worker serving the '{job.lane}' lane is alive: start one with "
            "`chatedit serve` (or see the Status page).")
        st.progress(0.0, text=text)
    else:
        st.progress(min(1.0, max(0.0, job.progress)),
                    text=f"{doing}… {job.progress:.0%} · {job.progress_message or 'running'}"
                    + (" · stopping…" if job.cancel_requested else ""))


@st.fragment(run_every=POLL_S)
def watch_job(job_id: int, *, doing: str | Callable[[JobRecord], str],
              on_end: Callable[[JobRecord | None], None] | None = None, cancellable: bool = True,
              preview: Callable[[Services, JobRecord], bytes | None] | None = None) -> None:
    """A job being watched, for every page: its progress, Cancel, and the whole page again when it ends.

    Only this fragment runs again while the job is queued or running, so the rest of the page
    keeps still. ``on_end`` gets the finished job (``None`` when it is gone) and records what
    the page should show next, in session state or the database; then the whole page runs
    (with no ``on_end``, the page reads the outcome itself).
    ``doing`` names the work in the progress bar (or says it from the job); ``preview`` gives
    a picture to show beside the bar while it runs, or ``None``.
    """
    services = get_services()
    try:
        job = services.queue.get(job_id)
    except JobNotFound:
        _ended(on_end, None)
    if job.terminal:
        _ended(on_end, job)
    label = doing if isinstance(doing, str) else doing(job)
    picture = preview(services, job) if preview is not None and job.status is JobStatus.RUNNING else None
    if picture is None:
        job_progress(services, job, label)
    else:
        bar, beside = st.columns([3, 1], vertical_alignment="center")
        with bar:
            job_progress(services, job, label)
        beside.image(picture, caption="Preview", width="stretch")
    if cancellable and st.button("Cancel", key=f"cancel_{job_id}", disabled=job.cancel_requested):
        services.queue.cancel(job_id)
        st.rerun(scope="fragment")


def _ended(on_end: Callable[[JobRecord | None], None] | None, job: JobRecord | None) -> NoReturn:
    if on_end is not None:
        on_end(job)
    st.rerun(scope="app")
