"""The Status page: is the database there, which workers are alive, how deep each queue is, what is configured."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from app.ui.common import get_services, when
from core.editing import GENERATIVE_SETTINGS
from core.settings import LANES
from db.migrate import current_revision
from db.types import utcnow
from jobs.services import Services

REFRESH_S = 3.0
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


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

    st.subheader("Recent errors")
    since = utcnow() - timedelta(days=7)
    failed = [j for j in services.queue.list(status="failed", limit=10) if j.finished_at is None or j.finished_at >= since]
    if not failed:
        st.caption("No job failed in the last 7 days.")
    else:
        st.table([{"job": j.id, "kind": j.kind, "lane": j.lane, "when": when(j.finished_at),
                       "error": (j.error_message or j.error_type or "").splitlines()[0][:200]} for j in failed],
                     )


def _backends(services: Services) -> None:
    st.subheader("Backends")
    settings = services.settings
    rows = [{"part": "planner", "backend": settings.planner, "usable": "yes",
             "note": "Offline rule parser (English and Chinese); no key or network needed."}]
    if settings.segmenter is None:
        rows.append({"part": "segmenter", "backend": "none", "usable": "—",
                     "note": "Not configured: select with the brush or a click. Set CHATEDIT_SEGMENTER to an ONNX "
                             "model made by `chatedit models export-segmenter` to find parts automatically."})
    else:
        exists = settings.segmenter.exists()
        rows.append({"part": "segmenter", "backend": str(settings.segmenter), "usable": "yes" if exists else "no",
                     "note": "ONNX model, run by the workers." if exists
                     else "CHATEDIT_SEGMENTER names a file that does not exist on this machine."})
    rows.append({"part": "editor", "backend": "classical", "usable": "yes",
                 "note": "Exact edits (adjust, recolor, blur, …) with OpenCV; always available."})
    by_setting: dict[str, list[str]] = {}
    for command, variable in GENERATIVE_SETTINGS.items():
        by_setting.setdefault(variable, []).append(command)
    for variable, commands in by_setting.items():
        rows.append({"part": "editor (generative)", "backend": "none", "usable": "—",
                     "note": f"{', '.join(commands)}: not available in this installation; such a command fails "
                             f"its job saying it needs {variable}."})
    st.table(rows)
