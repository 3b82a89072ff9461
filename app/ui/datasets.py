"""The Datasets page: admins make fine-tuning data (import, generate, harvest, merge, split), browse and fix
its rows, see its balance in charts, and download it for LLaMA-Factory or OpenAI.

Every change goes through the service door (``jobs.services.datasets``), which checks
``datasets.manage`` again; a version never changes, so an edit or a deletion makes the next one
and the page says so. Import, generation and harvest are batch jobs watched with progress and
Cancel (``watch_job``); merge and split are quick door calls made here. What a version holds is
read once per version id and kept (versions are immutable), so filtering and charts do not go
back to the database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app.ui.common import command_summary, get_services, watch_job, when
from app.ui.identity import require_page
from core.planners.base import detect_language
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services
from jobs.services import datasets as door
from jobs.services.permissions import Actor, PermissionDenied

#: Session keys: the job being watched ({"id", "what"}), the sentence of the last change or job (shown once), a
#: failure's sentence, the rows an import left out, and the version to show next (set before its widgets exist).
JOB, DONE, FAILED, REJECTED, GOTO = ("datasets_job", "datasets_done", "datasets_failed", "datasets_rejected",
                                    "datasets_goto")
#: The version picked for browsing, and the row picked for editing (its number in the version, from 1).
PICK_NAME, PICK_VERSION, PICK_ROW = "datasets_name", "datasets_version", "datasets_row"
#: The dataset whose version PICK_VERSION holds.
PICKED_OF = "datasets_version_of"
#: Positions (in the version) of the rows the table shows, for the table's selection callback.
SHOWN = "datasets_shown_positions"
TABLE = "datasets_table"
IMPORT_FORMATS = ("seed", "alpaca", "sharegpt", "openai")
EXPORT_FORMATS = ("alpaca", "sharegpt", "openai")
FORMAT_HELP = {"seed": "the thesis file as it is (alpaca, labels in the history)", "alpaca": "LLaMA-Factory alpaca",
               "sharegpt": "LLaMA-Factory sharegpt", "openai": "OpenAI chat JSONL (messages)"}
#: Filters: session key → (label, column of the rows' frame that holds the values).
FILTERS = {"datasets_f_source": ("Source", "source"), "datasets_f_command": ("Command", "command_types"),
           "datasets_f_language": ("Language", "language"), "datasets_f_label": ("Label", "label_list"),
           "datasets_f_split": ("Split", "split"), "datasets_f_failed": ("Failed check", "failed")}
ASIDE_FILTER, SEARCH = "datasets_f_aside", "datasets_f_search"
ASIDE_CHOICES = ("all rows", "used rows", "set aside")
NO_SPLIT = "(none)"
#: The table's columns, in order.
SHOWN_COLUMNS = ["#", "request", "language", "labels", "commands", "checks", "source", "split", "set aside"]
#: Most labels a chart shows (the most frequent).
TOP_LABELS = 30
MAX_ROWS_PER_JOB = 200_000


def render() -> None:
    actor = require_page("datasets.manage", "The Datasets page is for admins.")
    services = get_services()
    st.title("Datasets")
    _messages()
    summaries = door.list_datasets(services, actor)
    _versions_table(summaries)
    _create(services, actor, summaries)
    if not summaries:
        return
    version = _pick_version(summaries)
    if version is None:
        return
    frame = _frame(services, actor, version)
    _browse(services, actor, version, frame)
    _charts(version, frame)
    _download(services, actor, version)


def _messages() -> None:
    done = st.session_state.pop(DONE, None)
    if done:
        st.success(done)
    failed = st.session_state.pop(FAILED, None)
    if failed:
        st.error(failed)
    rejected = st.session_state.get(REJECTED)
    if rejected:
        with st.expander(f"{rejected['count']:,} rows of {rejected['file']} were left out", expanded=True):
            st.caption("Each with the reason; import again with “keep rows that fail a check” to keep them set "
                       "aside instead." + (f" The first {len(rejected['rows']):,} are listed."
                                           if rejected["count"] > len(rejected["rows"]) else ""))
            st.dataframe(pd.DataFrame([{"row in the file": int(r["index"]) + 1, "reason": r["reason"]}
                                       for r in rejected["rows"]]), hide_index=True)
            if st.button("Dismiss", key="datasets_rejected_dismiss"):
                st.session_state.pop(REJECTED, None)
                st.rerun()


# ---------------------------------------------------------------------- datasets and versions


def _versions_table(summaries: list[door.DatasetSummary]) -> None:
    if not summaries:
        st.info("No datasets yet: import a file, generate rows or harvest approved steps below.")
        return
    st.dataframe(pd.DataFrame([_version_line(v) for d in summaries for v in reversed(d.versions)]),
                 hide_index=True, column_config={"version": st.column_config.TextColumn(width="medium"),
                                                 "note": st.column_config.TextColumn(width="large")})


def _version_line(v: door.VersionRecord) -> dict[str, Any]:
    splits = v.split_counts
    drawn = " / ".join(f"{splits.get(s, 0):,}" for s in ("train", "val", "test"))
    return {"version": v.spec, "rows": v.row_count, "set aside": v.aside_count,
            "train / val / test": drawn if v.split_seed is not None else "not split",
            "note": v.note, "by": v.created_by, "when": when(v.created_at)}


def _pick_version(summaries: list[door.DatasetSummary]) -> door.VersionRecord | None:
    st.header("Rows")
    state = st.session_state
    by_name = {d.name: d for d in summaries if d.versions}
    if not by_name:
        return None
    goto = state.pop(GOTO, None)
    if goto is not None and goto[0] in by_name:
        state[PICK_NAME], state[PICK_VERSION] = goto  # the row picked stays picked: an edit shows itself
    if state.get(PICK_NAME) not in by_name:
        state[PICK_NAME] = next(iter(by_name))
    left, right = st.columns(2)
    name = left.selectbox("Dataset", list(by_name), key=PICK_NAME)
    versions = {v.number: v for v in reversed(by_name[name].versions)}  # newest first
    if state.get(PICK_VERSION) not in versions or state.get(PICKED_OF) != name:  # another dataset: its newest
        state[PICK_VERSION] = next(iter(versions))
    state[PICKED_OF] = name
    number = right.selectbox("Version", list(versions), key=PICK_VERSION,
                             format_func=lambda n: f"{n} · {versions[n].row_count:,} rows · {versions[n].note}"[:90])
    return versions[number]


# ---------------------------------------------------------------------- making versions


def _create(services: Services, actor: Actor, summaries: list[door.DatasetSummary]) -> None:
    st.header("Make a version")
    job = st.session_state.get(JOB) or _unfinished_job(services, actor)
    if job is not None:
        st.session_state[JOB] = job
        watch_job(int(job["id"]), doing=str(job["what"]), on_end=_job_ended)
        return
    tabs = st.tabs(["Import", "Generate", "Harvest", "Merge", "Split"])
    with tabs[0]:
        _import_form(services, actor)
    with tabs[1]:
        _generate_form(services, actor)
    with tabs[2]:
        _harvest_form(services, actor)
    specs = [v.spec for d in summaries for v in reversed(d.versions)]
    with tabs[3]:
        _merge_form(services, actor, specs)
    with tabs[4]:
        _split_form(services, actor, specs)


#: What the page calls each dataset job while it watches it.
JOB_KINDS = {"dataset_import": "Importing {file_name}", "dataset_generate": "Generating rows",
             "dataset_harvest": "Harvesting approved steps"}


def _unfinished_job(services: Services, actor: Actor) -> dict[str, Any] | None:
    """A dataset job of this person still queued or running (after a reload, or from another tab), to watch again."""
    for kind, what in JOB_KINDS.items():
        for job in services.queue.list(status=["queued", "running"], kind=kind, owner_id=actor.id, limit=1):
            return {"id": job.id, "what": what.format(file_name=job.payload.get("file_name") or "a file")}
    return None


def _submit(what: str, submit: Callable[[], int]) -> None:
    """Queue a batch job and watch it; a refusal or a bad request is a sentence and nothing is queued."""
    try:
        job_id = submit()
    except (door.DatasetError, PermissionDenied, ValueError) as exc:
        st.error(f"{exc} Nothing was queued.")
        return
    st.session_state[JOB] = {"id": job_id, "what": what}
    st.session_state.pop(REJECTED, None)
    st.rerun()


def _job_ended(job: JobRecord | None) -> None:
    """A watched job ended: the page says what it made (and shows the new version), or why it did not."""
    watched = st.session_state.pop(JOB, None) or {}
    what = str(watched.get("what", "The job"))
    if job is None:
        st.session_state[FAILED] = f"{what} is gone from the queue; nothing was made."
        return
    if job.status is JobStatus.CANCELLED:
        st.session_state[FAILED] = f"{what} was cancelled; nothing was kept."
        return
    if job.status is not JobStatus.SUCCEEDED:
        reason = (job.error_message or "no reason was recorded").strip().rstrip(".")
        st.session_state[FAILED] = f"{what} failed: {reason}."
        return
    result = dict(job.result or {})
    st.session_state[DONE] = _outcome(job.kind, result)
    if result.get("dataset") and result.get("version") is not None:
        st.session_state[GOTO] = (str(result["dataset"]), int(result["version"]))
    if job.kind == "dataset_import" and result.get("rejected_count"):
        st.session_state[REJECTED] = {"count": int(result["rejected_count"]), "rows": list(result.get("rejected", [])),
                                      "file": str(job.payload.get("file_name") or "the file")}


def _outcome(kind: str, result: dict[str, Any]) -> str:
    """What a finished job made, as a sentence."""
    where = f"{result.get('dataset')}@{result.get('version')}"
    rows = int(result.get("rows", 0))
    if kind == "dataset_import":
        left_out = int(result.get("rejected_count", 0))
        return f"Version {result.get('version')} made: imported {rows:,} rows into {where}" + (
            f"; {left_out:,} rows were left out (listed below)." if left_out else ".")
    if kind == "dataset_generate":
        aside = int(result.get("aside", 0))
        tokens = (f" The model used {int(result['prompt_tokens']):,} prompt and "
                  f"{int(result.get('completion_tokens', 0)):,} completion tokens in "
                  f"{int(result.get('llm_requests', 0)):,} requests." if "prompt_tokens" in result else "")
        return (f"Version {result.get('version')} made: generated {rows:,} rows into {where}"
                + (f"; {aside:,} set aside by a failed check." if aside else ".") + tokens)
    return f"Version {result.get('version')} made: harvested {rows:,} approved steps into {where}."


def _import_form(services: Services, actor: Actor) -> None:
    with st.form("datasets_import", border=False):
        upload = st.file_uploader("Dataset file", type=["json", "jsonl"], key="datasets_import_file")
        fmt = st.selectbox("Format", IMPORT_FORMATS, key="datasets_import_format",
                           format_func=lambda f: f"{f}: {FORMAT_HELP[f]}")
        name = st.text_input("Dataset name", key="datasets_import_name", placeholder="default: the file's name",
                             help="An existing dataset gets a new version with these rows added.")
        keep = st.checkbox("Keep rows that fail a check (set aside, not used)", key="datasets_import_keep")
        go = st.form_submit_button("Import", key="datasets_import_go")
    if not go:
        return
    if upload is None:
        st.error("Choose a file to import first.")
        return
    data, file_name = upload.getvalue(), upload.name
    _submit(f"Importing {file_name}", lambda: door.submit_import(
        services, actor, data, file_name=file_name, fmt=fmt, name=name.strip() or None, keep_invalid=keep))


def _generate_form(services: Services, actor: Actor) -> None:
    llm_ready = bool(services.settings.openai_model)
    with st.form("datasets_generate", border=False):
        name = st.text_input("Dataset name", value="generated", key="datasets_generate_name",
                             help="An existing dataset gets a new version with these rows added.")
        left, right = st.columns(2)
        templates = left.number_input("Template rows", min_value=0, max_value=MAX_ROWS_PER_JOB, value=1000, step=500,
                                      key="datasets_generate_templates",
                                      help="Written from the rules file by phrasing templates (English and Chinese).")
        llm = right.number_input("LLM rows", min_value=0, max_value=MAX_ROWS_PER_JOB, value=0, step=50,
                                 key="datasets_generate_llm", disabled=not llm_ready,
                                 help="Written by the OpenAI-compatible model, then checked (tokens are counted).")
        seed = left.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="datasets_generate_seed")
        languages = right.multiselect("Languages", ["en", "zh"], default=["en", "zh"],
                                      key="datasets_generate_languages")
        mode = st.radio("LLM mode", ["paraphrase", "write"], horizontal=True, key="datasets_generate_mode",
                        disabled=not llm_ready,
                        format_func=lambda m: {"paraphrase": "paraphrase template requests",
                                               "write": "write requests for sampled commands"}[m])
        go = st.form_submit_button("Generate", key="datasets_generate_go")
    if not llm_ready:
        st.caption("LLM rows need a model: set CHATEDIT_OPENAI_MODEL (and CHATEDIT_OPENAI_BASE_URL for a vLLM, "
                   "Ollama or llama.cpp server) to generate them.")
    if not go:
        return
    llm_rows = int(llm) if llm_ready else 0
    if int(templates) + llm_rows == 0:
        st.error("Ask for some rows: template rows, LLM rows or both.")
        return
    if not languages:
        st.error("Choose at least one language.")
        return
    total = int(templates) + llm_rows
    _submit(f"Generating {total:,} rows", lambda: door.submit_generate(
        services, actor, name.strip(), templates=int(templates), llm=llm_rows, seed=int(seed),
        languages=tuple(languages), llm_mode=mode))


def _harvest_form(services: Services, actor: Actor) -> None:
    st.caption("The steps the team approved in review become rows (their request, labels and commands); steps "
               "harvested into the dataset before are not added again.")
    with st.form("datasets_harvest", border=False):
        name = st.text_input("Dataset name", value="harvested", key="datasets_harvest_name")
        go = st.form_submit_button("Harvest approved steps", key="datasets_harvest_go")
    if go:
        _submit("Harvesting approved steps", lambda: door.submit_harvest(services, actor, name.strip()))


def _fractions(prefix: str) -> tuple[float, float, float]:
    """Train, val and test shares from three number inputs (in percent)."""
    cols = st.columns(3)
    shares = tuple(cols[i].number_input(f"{split} %", min_value=0, max_value=100, value=default,
                                        key=f"{prefix}_{split}")
                   for i, (split, default) in enumerate((("train", 80), ("val", 10), ("test", 10))))
    return tuple(s / 100 for s in shares)  # type: ignore[return-value]


def _quick(change: Callable[[], door.VersionRecord], doing: str) -> None:
    """A door call that makes a version (merge, split): a spinner while it runs, then the page shows the version."""
    try:
        with st.spinner(doing):
            version = change()
    except (door.DatasetError, PermissionDenied, ValueError) as exc:
        st.error(str(exc))
        return
    st.session_state[DONE] = f"Version {version.number} made: {version.spec}, {version.row_count:,} rows " \
                             f"({version.note})."
    st.session_state[GOTO] = (version.dataset, version.number)
    st.rerun()


def _split_ok(shares: tuple[float, float, float]) -> bool:
    if abs(sum(shares) - 1.0) > 1e-6:
        st.error(f"The shares add up to {sum(shares):.0%}; make train, val and test add up to 100%.")
        return False
    return True


def _merge_form(services: Services, actor: Actor, specs: list[str]) -> None:
    if not specs:
        st.caption("Merging needs a dataset version to merge.")
        return
    st.caption("The usable rows of the chosen versions, near-duplicates removed, drawn into train/val/test.")
    with st.form("datasets_merge", border=False):
        sources = st.multiselect("Versions to merge", specs, key="datasets_merge_sources")
        name = st.text_input("New dataset name", value="merged", key="datasets_merge_name")
        seed = st.number_input("Split seed", min_value=0, max_value=2**31 - 1, value=0, key="datasets_merge_seed")
        shares = _fractions("datasets_merge")
        go = st.form_submit_button("Merge", key="datasets_merge_go")
    if not go:
        return
    if not sources:
        st.error("Choose the versions to merge.")
        return
    if not _split_ok(shares):
        return
    _quick(lambda: door.merge(services, actor, name.strip(), list(sources), seed=int(seed), fractions=shares),
           f"Merging {', '.join(sources)}…")


def _split_form(services: Services, actor: Actor, specs: list[str]) -> None:
    if not specs:
        st.caption("Splitting needs a dataset version.")
        return
    st.caption("A new version with the same usable rows drawn into train/val/test, stratified by command and "
               "language; no request is in two splits.")
    with st.form("datasets_split", border=False):
        spec = st.selectbox("Version", specs, key="datasets_split_source")
        seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="datasets_split_seed")
        shares = _fractions("datasets_split")
        go = st.form_submit_button("Split", key="datasets_split_go")
    if not go or not _split_ok(shares):
        return
    name, number = door.parse_spec(spec)
    _quick(lambda: door.split(services, actor, name, number, seed=int(seed), fractions=shares), f"Splitting {spec}…")


# ---------------------------------------------------------------------- a version's rows


@st.cache_resource(max_entries=6, show_spinner="Reading the rows of this version…")
def _frame_of(database_url: str, version_id: int, name: str, number: int, _services: Services,
              _actor: Actor) -> pd.DataFrame:
    """One line per row of a version (never changed: a version is immutable, so the id is the whole key)."""
    stored = door.version_rows(_services, _actor, name, number)
    lines = []
    for s in stored:
        row = s.row
        failed = row.failed_checks
        lines.append({
            "id": s.id, "#": s.position + 1, "request": row.request, "language": row.language,
            "labels": ", ".join(row.labels), "commands": " · ".join(command_summary(c) for c in row.commands),
            "checks": "passed" if not failed else "; ".join(f"{k}: {v}" for k, v in failed.items()),
            "source": row.source, "split": row.split or NO_SPLIT, "set aside": s.aside,
            "command_types": tuple(dict.fromkeys(row.command_types)), "label_list": tuple(row.labels),
            "failed": tuple(failed), "length": len(row.request), "row": row,
        })
    columns = [*SHOWN_COLUMNS, "id", "command_types", "label_list", "failed", "length", "row"]
    return pd.DataFrame(lines, columns=columns)


def _frame(services: Services, actor: Actor, version: door.VersionRecord) -> pd.DataFrame:
    return _frame_of(services.settings.resolved_database_url, version.id, version.dataset, version.number, services,
                     actor)


def _choices(frame: pd.DataFrame, column: str) -> list[str]:
    values: Counter[str] = Counter()
    for value in frame[column]:
        values.update(value if isinstance(value, tuple) else (value,))
    return sorted(values)


def _filtered(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the filters and the search box leave (every filter left empty keeps everything)."""
    state = st.session_state
    keep = pd.Series(True, index=frame.index)
    for key, (_, column) in FILTERS.items():
        chosen = set(state.get(key) or ())
        if chosen:
            keep &= frame[column].map(lambda v, c=chosen: bool(c & set(v if isinstance(v, tuple) else (v,))))
    aside = state.get(ASIDE_FILTER, ASIDE_CHOICES[0])
    if aside != ASIDE_CHOICES[0]:
        keep &= frame["set aside"] == (aside == "set aside")
    search = (state.get(SEARCH) or "").strip().casefold()
    if search:
        keep &= frame["request"].str.casefold().str.contains(search, regex=False) | \
            frame["commands"].str.casefold().str.contains(search, regex=False)
    return frame[keep]


def _browse(services: Services, actor: Actor, version: door.VersionRecord, frame: pd.DataFrame) -> None:
    with st.expander("Filters", expanded=True):
        cols = st.columns(3)
        for i, (key, (label, column)) in enumerate(FILTERS.items()):
            options = _choices(frame, column)
            if not set(st.session_state.get(key) or ()) <= set(options):  # another version: drop stale choices
                st.session_state[key] = [v for v in st.session_state.get(key) or () if v in options]
            cols[i % 3].multiselect(label, options, key=key, placeholder="any")
        cols[0].radio("Rows", ASIDE_CHOICES, horizontal=True, key=ASIDE_FILTER)
        cols[1].text_input("Search requests and commands", key=SEARCH)
    shown = _filtered(frame)
    st.session_state[SHOWN] = [int(n) for n in shown["#"]]
    st.caption(f"{len(shown):,} of {len(frame):,} rows of {version.spec}"
               + (f" ({version.aside_count:,} set aside: a failed check; they are not used for training)"
                  if version.aside_count else "") + ". Pick a row in the table to edit or delete it.")
    st.dataframe(shown[SHOWN_COLUMNS], hide_index=True, key=TABLE, on_select=_table_picked,
                 selection_mode="single-row")
    aside_shown = shown[shown["set aside"]]
    if len(aside_shown) and st.button(f"Keep the {len(aside_shown):,} set-aside rows shown (use them after all)",
                                      key="datasets_keep_aside"):
        _change(lambda: door.keep_rows(services, actor, version.dataset, version.number,
                                       [int(i) for i in aside_shown["id"]]))
    _edit_row(services, actor, version, frame)


def _table_picked() -> None:
    """The table's selection picks the row to edit (a callback: it runs before the row number's widget)."""
    event = st.session_state.get(TABLE)
    try:
        rows = list(event["selection"]["rows"]) if event else []
    except (KeyError, TypeError):
        rows = []
    shown = st.session_state.get(SHOWN) or []
    if rows and rows[0] < len(shown):
        st.session_state[PICK_ROW] = shown[rows[0]]


def _change(change: Callable[[], door.VersionRecord], what: str = "") -> None:
    """Make a new version with ``change()`` and show it; a refusal or a bad edit is a sentence here."""
    try:
        version = change()
    except (door.DatasetError, PermissionDenied, ValueError) as exc:
        st.error(str(exc))
        return
    st.session_state[DONE] = f"Version {version.number} made: {what or version.note}."
    st.session_state[GOTO] = (version.dataset, version.number)
    st.rerun()


def _edit_row(services: Services, actor: Actor, version: door.VersionRecord, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    st.subheader("Edit a row")
    state = st.session_state
    if not 1 <= int(state.get(PICK_ROW) or 1) <= len(frame):
        state.pop(PICK_ROW, None)
    number = int(st.number_input("Row #", min_value=1, max_value=len(frame), key=PICK_ROW,
                                 help="The row's number in the version (the table's # column); picking a row in "
                                      "the table sets it."))
    line = frame.iloc[number - 1]
    row = line["row"]
    if line["set aside"]:
        st.warning(f"Row {number} is set aside: {line['checks']}.")
    prefix = f"datasets_edit_{version.id}_{number}"  # per row: another row shows its own values
    with st.form("datasets_edit", border=False):
        request = st.text_area("Request", value=row.request, key=f"{prefix}_request")
        labels = st.text_input("Labels (comma-separated)", value=", ".join(row.labels), key=f"{prefix}_labels")
        commands = st.text_area("Commands (JSON)", value=json.dumps([dict(c) for c in row.commands],
                                                                    ensure_ascii=False, indent=1),
                                height=160, key=f"{prefix}_commands")
        save, delete = st.columns(2)
        saved = save.form_submit_button("Save as a new version", key="datasets_edit_save")
        deleted = delete.form_submit_button(f"Delete row {number}", key="datasets_edit_delete")
    st.caption(" · ".join(command_summary(c) for c in row.commands) or "no commands")
    if deleted:
        _change(lambda: door.delete_rows(services, actor, version.dataset, version.number, [int(line["id"])]),
                f"row {number} of version {version.number} deleted")
    if not saved:
        return
    try:
        parsed = json.loads(commands)
    except json.JSONDecodeError as exc:
        st.error(f"The commands are not JSON ({exc.msg} at character {exc.pos}); nothing was saved.")
        return
    if not isinstance(parsed, list) or not all(isinstance(c, dict) for c in parsed):
        st.error("The commands are a JSON array of objects such as "
                 '[{"command": "recolor", "paras": [["Hair"], "blue"]}]; nothing was saved.')
        return
    edited = replace(row, request=request.strip(), language=detect_language(request),
                     labels=tuple(x.strip() for x in labels.split(",") if x.strip()), commands=tuple(parsed),
                     checks={})
    _change(lambda: door.edit_row(services, actor, version.dataset, version.number, int(line["id"]), edited),
            f"row {number} of version {version.number} edited")


# ---------------------------------------------------------------------- charts


def _charts(version: door.VersionRecord, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    st.header("Balance")
    st.caption(f"All {len(frame):,} rows of {version.spec}, those set aside included (coloured apart).")
    used = frame["set aside"].map({False: "used", True: "set aside"})
    left, right = st.columns(2)
    with left:
        st.subheader("Commands")
        commands = frame.assign(use=used).explode("command_types").dropna(subset=["command_types"])
        st.altair_chart(_bars(commands, "command_types", "command"), width="stretch")
        st.subheader("Languages")
        st.altair_chart(_bars(frame.assign(use=used), "language", "language"), width="stretch")
        st.subheader("Sources")
        st.altair_chart(_bars(frame.assign(use=used), "source", "source"), width="stretch")
    with right:
        st.subheader("Labels")
        labels = frame.assign(use=used).explode("label_list").dropna(subset=["label_list"])
        top = labels["label_list"].value_counts().index[:TOP_LABELS]
        st.altair_chart(_bars(labels[labels["label_list"].isin(top)], "label_list", "label"), width="stretch")
        st.subheader("Request lengths")
        lengths = alt.Chart(frame.assign(use=used)[["length", "use"]]).mark_bar().encode(
            x=alt.X("length:Q", bin=alt.Bin(maxbins=40), title="characters"),
            y=alt.Y("count():Q", title="rows", stack=True),
            color=_use_colour(), tooltip=["count():Q"])
        st.altair_chart(lengths, width="stretch")


def _use_colour() -> alt.Color:
    return alt.Color("use:N", scale=alt.Scale(domain=["used", "set aside"], range=["#4c78a8", "#c8553d"]), title=None)


def _bars(data: pd.DataFrame, column: str, title: str) -> alt.Chart:
    counts = data.groupby([column, "use"]).size().reset_index(name="rows").rename(columns={column: title})
    return alt.Chart(counts).mark_bar().encode(
        y=alt.Y(f"{title}:N", sort="-x", title=None), x=alt.X("rows:Q", stack=True), color=_use_colour(),
        tooltip=[f"{title}:N", "use:N", "rows:Q"])


# ---------------------------------------------------------------------- export


def _download(services: Services, actor: Actor, version: door.VersionRecord) -> None:
    st.header("Download")
    st.caption("The usable rows (not those set aside), with a dataset_info.json so LLaMA-Factory can train on the "
               "folder as it is.")
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    fmt = left.selectbox("Format", EXPORT_FORMATS, key="datasets_export_format",
                         format_func=lambda f: FORMAT_HELP[f])
    right.download_button(f"Download {version.spec} ({fmt}, zip)", data=download_data(services, actor, version, fmt),
                          file_name=f"{version.dataset}_v{version.number}_{fmt}.zip", mime="application/zip",
                          key="datasets_download", on_click="ignore")


def download_data(services: Services, actor: Actor, version: door.VersionRecord, fmt: str) -> Callable[[], bytes]:
    """The Download button's data, built only when clicked (a large version's export is not made on every run)."""
    return lambda: door.export_zip(services, actor, version.dataset, version.number, fmt)

