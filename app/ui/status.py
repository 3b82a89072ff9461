"""The Status page: is the database there, which workers are alive, how deep each queue is, what is configured.

Recent jobs can be cancelled or retried here by whoever owns them, or an admin (``history.write_any``);
anyone else sees the buttons disabled, with whose job it is.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from app.ui.common import STATUS_ICONS, get_services, when
from app.ui.identity import current_actor
from app.ui.settings import PLANNER_ABOUT, editor_rows, planner_problem
from core.errors import first_text_line
from core.segmentation import SegmenterError, read_metadata
from core.segmentation.default_segmenter import segmenter_in_use
from core.settings import LANES, Settings
from db.migrate import current_revision
from db.types import utcnow
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services
from jobs.services.permissions import Actor, PermissionDenied, UnknownUser, actor_for, allowed

REFRESH_S = 3.0
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: The jobs listed under "Recent jobs": the ones a person may want to stop or run again.
ACTIONABLE = ("queued", "running", "failed", "cancelled")
RECENT_JOBS = 10


def may_manage(actor: Actor, job: JobRecord) -> bool:
    """Whether ``actor`` may cancel or retry ``job``: their own (while they may submit jobs), or they are an admin."""
    if allowed(actor, "history.write_any"):
        return True
    return job.owner_id == actor.id and allowed(actor, "jobs.submit")


def render() -> None:
    services = get_services()
    st.title("Status")
    st.caption(f"Refreshes every {REFRESH_S:g} seconds.")
    _live(services)
    _backends(services)


@st.fragment(run_every=REFRESH_S)
def _live(services: Services) -> None:
    try:
        revision = current_revision(services.database)
    except Exception as exc:  # noqa: BLE001 - any driver error means the database is not reachable
        st.error(f"Database: not reachable ({type(exc).__name__}). Check CHATEDIT_DATABASE_URL.")
        return
    where = services.settings.resolved_database_url.split("@")[-1]
    st.success(f"Database reachable: {where} (schema revision {revision}); "
               f"image files in the '{services.settings.blob_store}' blob store.")

    st.subheader("Workers")
    alive_s = max(15.0, 3 * services.settings.worker_heartbeat_seconds)
    workers = services.queue.workers(alive_within_s=alive_s)
    if not workers:
        st.error("No worker is alive: queued edits will wait. Start ChatEdit with `chatedit serve` "
                 "(or `chatedit worker`).")
    else:
        now = utcnow()
        st.table([{
            "worker": w.id, "host": w.host, "pid": w.pid, "lanes": ", ".join(w.lanes),
            "concurrency": w.concurrency, "GPU": w.gpu_name or "none",
            "running jobs": ", ".join(map(str, w.current_jobs)) or "idle",
            "last heartbeat": f"{(now - w.heartbeat_at).total_seconds():.0f} s ago",
            "since": when(w.started_at),
        } for w in workers])
        served = {lane for w in workers for lane in w.lanes}
        missing = [lane for lane in LANES if lane not in served]
        if missing:
            st.warning(f"No alive worker serves the lane(s) {', '.join(missing)}: jobs there will wait.")

    st.subheader("Queue")
    counts = services.queue.counts()
    st.table([{"lane": lane, **{s: counts.get((lane, s), 0) for s in STATUSES}}
                  for lane in LANES])

    _recent_jobs(services, current_actor())

    st.subheader("Recent errors")
    since = utcnow() - timedelta(days=7)
    failed = [j for j in services.queue.list(status="failed", limit=10) if j.finished_at is None or j.finished_at >= since]
    if not failed:
        st.caption("No job failed in the last 7 days.")
    else:
        st.table([{"job": j.id, "kind": j.kind, "lane": j.lane, "when": when(j.finished_at),
                       "error": first_text_line(j.error_message or j.error_type)[:200]} for j in failed],
                     )


def _owner_label(services: Services, owner_id: int, names: dict[int, str]) -> str:
    if owner_id not in names:
        try:
            names[owner_id] = actor_for(services, owner_id).label
        except UnknownUser:
            names[owner_id] = f"user {owner_id}"
    return names[owner_id]


def _recent_jobs(services: Services, actor: Actor) -> None:
    """The newest queued, running, failed or cancelled jobs, with Cancel or Retry for whoever may."""
    st.subheader("Recent jobs")
    jobs = services.queue.list(status=list(ACTIONABLE), limit=RECENT_JOBS)
    if not jobs:
        st.caption("No job is queued, running, failed or cancelled.")
        return
    names: dict[int, str] = {}
    for job in jobs:
        owner = "you" if job.owner_id == actor.id else _owner_label(services, job.owner_id, names)
        mine = may_manage(actor, job)
        refused = None if mine else f"Only {owner} or an admin may cancel or retry this job."
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"{STATUS_ICONS[job.status]} **Job {job.id}** · {job.kind} · {job.status.value} · "
                      f"{'yours' if owner == 'you' else owner + '’s'} · {when(job.created_at)}")
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            if button.button("Cancel", key=f"status_cancel_{job.id}", disabled=not mine or job.cancel_requested,
                             help=refused or "Stop this job (a running one stops at its next step)."):
                _act(services, actor, job, "cancel")
        elif button.button("Retry", key=f"status_retry_{job.id}", disabled=not mine,
                           help=refused or "Queue this job again as a new job."):
            _act(services, actor, job, "retry")


def _act(services: Services, actor: Actor, job: JobRecord, action: str) -> None:
    """Cancel or retry ``job`` as ``actor``, checked again here (a stale page or a typed click is no permission)."""
    if not may_manage(actor, job):
        st.error(f"{actor.label} ({actor.role}) may not {action} job {job.id}: it is not theirs.")
        return
    try:
        if action == "cancel":
            services.queue.cancel(job.id)
        else:
            new_id = services.queue.retry(job.id)
            st.success(f"Job {job.id} is queued again as job {new_id}.")
            return
    except (InvalidJobRequest, JobNotFound, PermissionDenied) as exc:
        st.error(str(exc))
        return
    st.rerun()


def _backends(services: Services) -> None:
    st.subheader("Backends")
    settings = services.settings
    rows = []
    for name, about in PLANNER_ABOUT.items():
        problem = planner_problem(name, settings)
        default = " (default)" if name == settings.planner else ""
        rows.append({"part": "planner", "backend": name + default, "usable": "yes" if problem is None else "no",
                     "note": about if problem is None else problem[0].upper() + problem[1:]})
    rows.append(segmenter_row(settings))
    rows.append({"part": "advice", "backend": settings.vision_model or "none",
                 "usable": "yes" if settings.vision_model else "—",
                 "note": "Vision model behind the editor's Advise button." if settings.vision_model
                 else "Not configured: set CHATEDIT_VISION_MODEL to a vision chat model for the Advise button."})
    rows.append({"part": "editor", "backend": "classical", "usable": "yes",
                 "note": "Exact edits (adjust, recolor, blur, …) with OpenCV; always available."})
    for row in editor_rows(settings)[1:]:
        rows.append({"part": "editor (generative)", "backend": row["backend"], "usable": row["available"],
                     "note": f"{row['commands']}: " + (row["note"] if row["available"] == "yes" else
                             f"not available in this installation; the Operation Board greys such a command "
                             f"and says so before any job. {row['note']}")})
    st.table(rows)


def segmenter_row(settings: Settings) -> dict[str, str]:
    """Is a segmenter configured, does its file exist, and which model is it."""
    settings = settings.model_copy(update={"segmenter": segmenter_in_use(settings)})
    if settings.segmenter is None:
        return {"part": "segmenter", "backend": "none", "usable": "—",
                "note": "Not configured: select with the brush or a click. Run `chatedit models install-default`, "
                        "or set CHATEDIT_SEGMENTER to an ONNX "
                        "model made by `chatedit models export-segmenter` to find parts automatically."}
    if not settings.segmenter.exists():
        return {"part": "segmenter", "backend": str(settings.segmenter), "usable": "no",
                "note": "CHATEDIT_SEGMENTER names a file that does not exist on this machine."}
    try:
        meta = read_metadata(settings.segmenter)
    except SegmenterError as exc:
        return {"part": "segmenter", "backend": str(settings.segmenter), "usable": "no", "note": str(exc)}
    return {"part": "segmenter", "backend": str(settings.segmenter), "usable": "yes",
            "note": f"Model {meta.model_id} ({len(meta.label_names)} labels), run by the workers with ONNX Runtime."}
