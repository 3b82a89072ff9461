"""The Evaluation page: admins measure planners on a dataset version's split, keep every run, and compare them.

A valid command can still be the wrong one, so a run is judged by every metric of
``finetune.metrics`` (exact match, command F1, target and parameter accuracy, refusals, an error
type for every miss, latency, tokens), not by validity alone; their names and labels come through
the door, which re-exports them (``app/`` never imports ``finetune``). A run is an ``eval_run`` batch job
watched with progress and Cancel; what it stored is read back through the door
(``jobs.services.evaluations``), the same rows ``chatedit eval planner`` prints, so the page and
the command line never disagree. Two or more runs are compared side by side (per metric, per
command, per language); one run is opened up: its confusion matrix of command types, its error
types, and every example with the expected and produced programs in words and what differs,
filterable and downloadable as CSV.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app.ui.common import command_summary, get_services, watch_job, when
from app.ui.identity import current_actor, require_page
from core.planner_install import local_planner_model
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services
from jobs.services import datasets as datasets_door
from jobs.services import evaluations as door
from jobs.services.evaluations import ERROR_TYPES, LANGUAGE_METRICS, METRIC_LABELS, METRIC_NAMES, NONE, metrics_table
from jobs.services.permissions import Actor, PermissionDenied

#: Session keys: the job being watched ({"id", "what"}), the sentence of the last run's end (shown once, as
#: success or error), and the run to show next (set by a finished job, applied before the widgets exist).
JOB, DONE, FAILED, GOTO = "evaluation_job", "evaluation_done", "evaluation_failed", "evaluation_goto"
#: Widget keys of the start form.
PLANNER, DECODING, DATASET, SPLIT, LIMIT, BATCH, MODEL, START = (
    "evaluation_planner", "evaluation_decoding", "evaluation_dataset", "evaluation_split", "evaluation_limit",
    "evaluation_batch", "evaluation_model", "evaluation_start")
#: The runs compared side by side, and the run opened up.
COMPARE, RUN = "evaluation_compare", "evaluation_run"
#: Filters of the per-example table.
F_ERROR, F_LANGUAGE, F_COMMAND, F_MISSES = ("evaluation_f_error", "evaluation_f_language", "evaluation_f_command",
                                            "evaluation_f_misses")
EXAMPLES_TABLE, DOWNLOAD = "evaluation_examples", "evaluation_download"

ALL_ROWS = "all"
PLANNER_HELP = {"rules": "the rule planner (offline, bilingual)",
                "reference": "the dataset's own commands (a check of the data: should be perfect)",
                "openai": "an OpenAI-compatible model", "local": "a local model (transformers; GGUF too)"}
#: What enables a planner that needs a model, when it is not configured.
NEEDS = {"openai": "CHATEDIT_OPENAI_MODEL (and CHATEDIT_OPENAI_BASE_URL for a vLLM, Ollama or llama.cpp server)",
         "local": "CHATEDIT_LOCAL_LLM (a Hugging Face id, a model folder or a .gguf file; "
                  "`chatedit models install-planner smollm2` installs one)"}
#: Metrics that are shares (0..1): drawn as bars and shown as percentages.
RATES = door.RATE_METRICS
#: The runs table's metric columns.
KEY_METRICS = ("exact_match", "f1_micro", "validity", "command_type_accuracy", "refusal_accuracy", "latency_p50_s")
ERROR_LABELS = {"unparsable": "unparsable reply", "unknown_command": "unknown command", "bad_paras": "bad paras",
                "wrong_label": "wrong label", "missed_refusal": "missed refusal", "missing_command": "missing command",
                "extra_command": "extra command", "wrong_command": "wrong command", "wrong_target": "wrong target",
                "wrong_para": "wrong para"}
RIGHT = "right"
#: The per-example table's columns, in order.
SHOWN_COLUMNS = ["#", "request", "language", "expected", "produced", "result", "what differs"]
#: Above this many rows the table is not coloured (a Styler sends a style per cell).
MAX_STYLED_ROWS = 5000
#: Chart and table sizes: pixels per row of a heatmap or table, and the widest axis label.
ROW_PX, LABEL_PX = 35, 220
MISS_COLOUR, RIGHT_COLOUR = "background-color: rgba(200, 85, 61, 0.18)", "background-color: rgba(76, 160, 90, 0.15)"


def render() -> None:
    actor = require_page("datasets.manage", "The Evaluation page is for admins.")
    services = get_services()
    st.title("Evaluation")
    st.caption("How often each planner writes the right program, where it goes wrong, and how runs compare. "
               "`chatedit eval planner` prints the same stored numbers.")
    _messages()
    _start(services, actor)
    runs = door.list_runs(services, actor)
    if not runs:
        st.info("No evaluation runs yet: start one above (the rule planner needs no model).")
        return
    _apply_goto(runs)
    _runs_table(runs)
    _compare(runs)
    _inspect(services, actor, runs)


def _messages() -> None:
    done = st.session_state.pop(DONE, None)
    if done:
        st.success(done)
    failed = st.session_state.pop(FAILED, None)
    if failed:
        st.error(failed)


def _apply_goto(runs: Sequence[door.RunRecord]) -> None:
    """A run that just ended is opened up and put beside the others (before those widgets exist this run)."""
    goto = st.session_state.pop(GOTO, None)
    ids = {r.id for r in runs}
    if goto is None or goto not in ids:
        return
    st.session_state[RUN] = goto
    chosen = [i for i in st.session_state.get(COMPARE) or [] if i in ids]
    st.session_state[COMPARE] = [goto, *[i for i in chosen if i != goto]]


# ---------------------------------------------------------------------- starting a run


def _start(services: Services, actor: Actor) -> None:
    st.header("Start a run")
    job = st.session_state.get(JOB) or _unfinished_job(services, actor)
    if job is not None:
        st.session_state[JOB] = job
        watch_job(int(job["id"]), doing=str(job["what"]), on_end=_job_ended)
        return
    versions = [v for d in datasets_door.list_datasets(services, actor) for v in reversed(d.versions)]
    if not versions:
        st.info("There is no dataset to evaluate on: import or generate one on the Datasets page first.")
        return
    settings = services.settings
    ready = {"rules": True, "reference": True, "openai": bool(settings.openai_model), "local": local_planner_model(settings) is not None}
    planners = [p for p in door.PLANNERS if ready.get(p, False)]
    left, right = st.columns(2)
    planner = left.selectbox("Planner", planners, key=PLANNER, format_func=lambda p: f"{p}: {PLANNER_HELP[p]}")
    missing = [p for p in door.PLANNERS if not ready.get(p, False)]
    if missing:
        left.caption(" ".join(f"The {p} planner needs {NEEDS[p]}." for p in missing if p in NEEDS))
    by_spec = {v.spec: v for v in versions}
    spec = right.selectbox("Dataset version", list(by_spec), key=DATASET,
                           format_func=lambda s: f"{s} · {by_spec[s].row_count - by_spec[s].aside_count:,} usable rows")
    version = by_spec[spec]
    splits = [s for s in ("test", "val", "train") if version.split_counts.get(s)]
    split_choices = [*splits, ALL_ROWS]
    if st.session_state.get(SPLIT) not in split_choices:
        st.session_state[SPLIT] = split_choices[0]
    split = right.selectbox("Split", split_choices, key=SPLIT,
                            format_func=lambda s: f"all {version.row_count - version.aside_count:,} usable rows"
                            if s == ALL_ROWS else f"{s} ({version.split_counts[s]:,} rows)")
    if not splits:
        right.caption(f"{spec} is not split into train/val/test; split it on the Datasets page to evaluate on "
                      "held-out rows.")
    limit = left.number_input("Examples (0: all)", min_value=0, max_value=1_000_000, value=0, step=50, key=LIMIT,
                              help="Only the first N rows of the split.")
    constrained: bool | None = None
    batch_size = 8
    model: str | None = None
    if planner == "local":
        decoding = right.radio("Decoding", ["constrained", "free"], horizontal=True, key=DECODING,
                               format_func=lambda d: {"constrained": "constrained (the command grammar)",
                                                      "free": "free (unconstrained)"}[d])
        constrained = decoding == "constrained"
        batch_size = int(left.number_input("Batch size", min_value=1, max_value=64, value=8, key=BATCH,
                                           help="Requests decoded together (those with the same image labels)."))
    elif planner == "openai":
        model = right.text_input("Model", key=MODEL, placeholder=f"default: {settings.openai_model}").strip() or None
    if not st.button("Start the evaluation", key=START, type="primary"):
        return
    what = f"Evaluating {planner}" + ("" if constrained is None else f" ({'constrained' if constrained else 'free'})") \
        + f" on {spec}" + ("" if split == ALL_ROWS else f"/{split}")
    try:
        job_id = door.submit_run(services, actor, planner=planner, dataset=spec,
                                 split=None if split == ALL_ROWS else split, constrained=constrained,
                                 limit=int(limit) or None, model=model, batch_size=batch_size)
    except (door.EvaluationError, datasets_door.DatasetError, PermissionDenied, ValueError) as exc:
        st.error(f"{exc} Nothing was queued.")
        return
    st.session_state[JOB] = {"id": job_id, "what": what}
    st.rerun()


def _unfinished_job(services: Services, actor: Actor) -> dict[str, Any] | None:
    """An evaluation of this person still queued or running (after a reload, or from another tab), to watch again."""
    for job in services.queue.list(status=["queued", "running"], kind="eval_run", owner_id=actor.id, limit=1):
        payload = job.payload
        return {"id": job.id, "what": f"Evaluating {payload.get('planner')} on {payload.get('dataset')}"
                + (f"/{payload['split']}" if payload.get("split") else "")}
    return None


def _job_ended(job: JobRecord | None) -> None:
    """The watched run ended: the page says how it went and opens it, or says why it did not run."""
    watched = st.session_state.pop(JOB, None) or {}
    what = str(watched.get("what", "The evaluation"))
    if job is None:
        st.session_state[FAILED] = f"{what} is gone from the queue; nothing was stored."
        return
    services = get_services()
    run = door.run_of_job(services, current_actor(), job.id)
    if run is not None:
        st.session_state[GOTO] = run.id
    if job.status is JobStatus.SUCCEEDED and run is not None:
        scalars = run.metrics.get("scalars", {})
        st.session_state[DONE] = (f"Run #{run.id} finished: {run.example_count:,} examples; exact match "
                                  f"{door.format_metric('exact_match', scalars.get('exact_match'))}, command F1 "
                                  f"{door.format_metric('f1_micro', scalars.get('f1_micro'))}.")
    elif job.status is JobStatus.CANCELLED:
        kept = f"; the {run.example_count:,} examples it scored are kept as run #{run.id}" if run and \
            run.example_count else ""
        st.session_state[FAILED] = f"{what} was cancelled{kept}."
    else:
        reason = (job.error_message or "no reason was recorded").strip().rstrip(".")
        st.session_state[FAILED] = f"{what} {job.status.value}: {reason}."


# ---------------------------------------------------------------------- the runs


def _scalars(run: door.RunRecord) -> dict[str, Any]:
    return dict(run.metrics.get("scalars") or {})


def _runs_table(runs: Sequence[door.RunRecord]) -> None:
    st.header("Runs")
    lines = []
    for run in runs:
        scalars = _scalars(run)
        line: dict[str, Any] = {"run": run.label, "status": run.status, "examples": run.example_count}
        for name in KEY_METRICS:
            value = scalars.get(name)
            line[METRIC_LABELS[name]] = None if value is None else (
                round(100 * float(value), 1) if name in RATES else round(float(value), 3))
        wall = run.timings.get("wall_s")
        line.update({"wall time (s)": wall, "by": run.created_by, "when": when(run.created_at)})
        lines.append(line)
    config = {METRIC_LABELS[n]: st.column_config.NumberColumn(format="%.1f%%") for n in KEY_METRICS if n in RATES}
    config["run"] = st.column_config.TextColumn(width="large")
    st.dataframe(pd.DataFrame(lines), hide_index=True, column_config=config)


def _scored(runs: Sequence[door.RunRecord]) -> list[door.RunRecord]:
    """Runs with stored metrics (a failed run before its first example has none)."""
    return [r for r in runs if r.metrics.get("scalars")]


def _compare(runs: Sequence[door.RunRecord]) -> None:
    st.header("Compare runs")
    scored = {r.id: r for r in _scored(runs)}
    if not scored:
        st.caption("No run has metrics yet.")
        return
    state = st.session_state
    if COMPARE not in state:
        state[COMPARE] = list(scored)[:2]  # the two newest
    state[COMPARE] = [i for i in state[COMPARE] if i in scored]
    chosen_ids = st.multiselect("Runs to compare", list(scored), key=COMPARE, format_func=lambda i: scored[i].label,
                                placeholder="choose two or more runs")
    chosen = [scored[i] for i in chosen_ids]
    if len(chosen) < 2:
        st.caption("Choose two or more runs to see them side by side.")
        return
    names = [r.label for r in chosen]
    st.subheader("Every metric")
    st.dataframe(_metrics_frame(chosen), hide_index=True)
    st.subheader("Metrics")
    rates = [{"metric": METRIC_LABELS[n], "run": r.label, "value": _scalars(r).get(n)}
             for r in chosen for n in RATES if _scalars(r).get(n) is not None]
    st.altair_chart(_grouped(pd.DataFrame(rates), "metric", names, [METRIC_LABELS[n] for n in RATES]),
                    width="stretch")
    st.subheader("Per command (F1)")
    commands = [{"command": name, "run": r.label, "value": row.get("f1"), "support": row.get("support")}
                for r in chosen for name, row in (r.metrics.get("per_command") or {}).items()
                if row.get("f1") is not None]
    if commands:
        st.altair_chart(_grouped(pd.DataFrame(commands), "command", names, None, extra=["support:Q"]),
                        width="stretch")
    st.subheader("Per language")
    languages = sorted({lang for r in chosen for lang in (r.metrics.get("per_language") or {})})
    shown_rates = [n for n in LANGUAGE_METRICS if n in RATES]
    columns = st.columns(max(1, len(languages)))
    for column, language in zip(columns, languages, strict=False):
        lines = [{"metric": METRIC_LABELS[n], "run": r.label, "value": value}
                 for r in chosen for n in shown_rates
                 if (value := (r.metrics.get("per_language") or {}).get(language, {}).get(n)) is not None]
        counts = ", ".join(f"{(r.metrics.get('per_language') or {}).get(language, {}).get('examples', 0):,}"
                           for r in chosen)
        with column:
            st.markdown(f"**{language}** (examples: {counts})")
            st.altair_chart(_grouped(pd.DataFrame(lines, columns=["metric", "run", "value"]), "metric", names,
                                     [METRIC_LABELS[n] for n in shown_rates]), width="stretch")


def _metrics_frame(runs: Sequence[door.RunRecord]) -> pd.DataFrame:
    """Every metric (rows) of every run (columns), formatted as the CLI prints them."""
    table = {"metric": [METRIC_LABELS[name] for name in METRIC_NAMES]}
    for run in runs:
        table[run.label] = [door.format_metric(name, value) for name, value in metrics_table(run.metrics)]
    return pd.DataFrame(table)


def _grouped(data: pd.DataFrame, category: str, runs: list[str], order: list[str] | None,
             extra: list[str] | None = None) -> alt.Chart:
    """Horizontal bars, one group per ``category`` value, one bar per run (coloured by run) in each group."""
    return alt.Chart(data).mark_bar().encode(
        y=alt.Y(f"{category}:N", sort=order, title=None, axis=alt.Axis(labelLimit=LABEL_PX)),
        yOffset=alt.YOffset("run:N", sort=runs),
        x=alt.X("value:Q", title="share", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("run:N", sort=runs, title=None, legend=alt.Legend(orient="bottom", columns=1,
                                                                           labelLimit=3 * LABEL_PX)),
        tooltip=[f"{category}:N", "run:N", alt.Tooltip("value:Q", format=".1%"), *(extra or [])])


# ---------------------------------------------------------------------- one run opened up


def _inspect(services: Services, actor: Actor, runs: Sequence[door.RunRecord]) -> None:
    st.header("One run")
    by_id = {r.id: r for r in runs}
    if st.session_state.get(RUN) not in by_id:
        scored = _scored(runs)
        st.session_state[RUN] = (scored[0] if scored else runs[0]).id
    run = by_id[st.selectbox("Run", list(by_id), key=RUN, format_func=lambda i: f"{by_id[i].label} · "
                                                                              f"{by_id[i].status}")]
    what = f"{run.example_count:,} examples, {run.status}, by {run.created_by} on {when(run.created_at)}"
    if run.timings.get("wall_s") is not None:
        what += f"; {run.timings['wall_s']:g} s" + (f" ({run.timings['examples_per_s']:g} examples/s)"
                                                   if run.timings.get("examples_per_s") else "")
    st.caption(what + ".")
    if not run.metrics.get("scalars"):
        st.info("This run stored no metrics (it ended before its first example was scored).")
        return
    left, right = st.columns(2)
    with left:
        st.subheader("Metrics")
        st.dataframe(pd.DataFrame([{"metric": METRIC_LABELS[n], "value": door.format_metric(n, v)}
                                   for n, v in metrics_table(run.metrics)]), hide_index=True,
                     height=ROW_PX * (len(METRIC_NAMES) + 1) + 10)
    with right:
        st.subheader("Command types: expected → produced")
        confusion = run.metrics.get("confusion") or {}
        if confusion:
            st.altair_chart(_confusion_chart(confusion), width="stretch")
        else:
            st.caption("No commands were expected or produced.")
        st.subheader("Error types")
        st.altair_chart(_errors_chart(run.metrics.get("errors") or {}, run.metrics.get("primary_errors") or {}),
                        width="stretch")
    _examples(services, actor, run)


def _confusion_chart(confusion: dict[str, dict[str, int]]) -> alt.LayerChart:
    """A heatmap of (expected type, produced type) pair counts, with the count written in each cell."""
    cells = [{"expected": want, "produced": got, "pairs": int(n)} for want, row in confusion.items()
             for got, n in row.items()]
    types = sorted(({c["expected"] for c in cells} | {c["produced"] for c in cells}) - {NONE}) + [NONE]
    side = max(160, ROW_PX * len(types))
    base = alt.Chart(pd.DataFrame(cells)).properties(height=side).encode(
        x=alt.X("produced:N", sort=types, title="produced", axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("expected:N", sort=types, title="expected"))
    heat = base.mark_rect().encode(color=alt.Color("pairs:Q", scale=alt.Scale(scheme="blues"), title="pairs"),
                                   tooltip=["expected:N", "produced:N", "pairs:Q"])
    text = base.mark_text(baseline="middle").encode(
        text="pairs:Q", color=alt.condition(alt.datum.pairs > max(c["pairs"] for c in cells) / 2,
                                            alt.value("white"), alt.value("black")))
    return heat + text


def _errors_chart(errors: dict[str, int], primary: dict[str, int]) -> alt.Chart:
    """Examples with each error type (and how many had it as their first, most severe error)."""
    lines = [{"error": ERROR_LABELS.get(kind, kind), "examples": int(errors.get(kind, 0)),
              "first error": int(primary.get(kind, 0))} for kind in ERROR_TYPES]
    return alt.Chart(pd.DataFrame(lines)).mark_bar(color="#c8553d").encode(
        y=alt.Y("error:N", sort=[ERROR_LABELS.get(k, k) for k in ERROR_TYPES], title=None,
                axis=alt.Axis(labelLimit=LABEL_PX)),
        x=alt.X("examples:Q", title="examples with it", axis=alt.Axis(tickMinStep=1)),
        tooltip=["error:N", "examples:Q", "first error:Q"])


@st.cache_resource(max_entries=6, show_spinner="Reading the examples of this run…")
def _examples_of(database_url: str, run_id: int, status: str, count: int, _services: Services,
                 _actor: Actor) -> pd.DataFrame:
    """One line per example of a run (a finished run never changes: its id, status and count are the key)."""
    return examples_frame(door.run_examples(_services, _actor, run_id))


def examples_frame(examples: Sequence[door.ExampleRecord]) -> pd.DataFrame:
    """The per-example table: the programs in words, the result (right, or the first error) and what differs."""
    lines = []
    for e in examples:
        score = e.score
        errors = tuple(score.get("errors") or ())
        misses = score.get("misses") or []
        produced = "(no command array in the reply)" if e.produced is None else (
            " · ".join(command_summary(c) for c in e.produced) or "(no commands)")
        names = {c.get("command") for c in [*e.expected, *(e.produced or [])] if isinstance(c, dict)}
        lines.append({
            "#": e.position + 1, "request": e.request, "language": e.language,
            "expected": " · ".join(command_summary(c) for c in e.expected) or "(no commands: a refusal)",
            "produced": produced,
            "result": RIGHT if not errors else ERROR_LABELS.get(errors[0], errors[0]),
            "what differs": "; ".join(str(m.get("detail", "")) for m in misses),
            "errors": errors, "commands": tuple(sorted(n for n in names if isinstance(n, str))),
            "miss": bool(errors), "labels": ", ".join(e.labels),
            "expected JSON": json.dumps(e.expected, ensure_ascii=False),
            "produced JSON": "" if e.produced is None else json.dumps(e.produced, ensure_ascii=False),
            "reply": e.reply or "", "exact match": bool(score.get("exact_match")),
            "F1": score.get("f1"), "latency (s)": score.get("latency_s"),
            "error types": ", ".join(errors),
        })
    columns = [*SHOWN_COLUMNS, "errors", "commands", "miss", "labels", "expected JSON", "produced JSON", "reply",
               "exact match", "F1", "latency (s)", "error types"]
    return pd.DataFrame(lines, columns=columns)


#: What the CSV export holds, in order.
CSV_COLUMNS = ["#", "request", "language", "labels", "expected", "produced", "result", "what differs", "error types",
               "exact match", "F1", "latency (s)", "expected JSON", "produced JSON", "reply"]


def examples_csv(frame: pd.DataFrame) -> bytes:
    """The examples shown, as CSV (UTF-8 with a byte-order mark, so spreadsheet programs read Chinese right)."""
    return frame[CSV_COLUMNS].to_csv(index=False).encode("utf-8-sig")


def filtered(frame: pd.DataFrame, *, errors: Sequence[str] = (), languages: Sequence[str] = (),
             commands: Sequence[str] = (), only_misses: bool = False) -> pd.DataFrame:
    """The examples the filters leave: any of the chosen error types, languages and commands (empty keeps all)."""
    keep = pd.Series(True, index=frame.index)
    if errors:
        keep &= frame["errors"].map(lambda v: bool(set(v) & set(errors)))
    if languages:
        keep &= frame["language"].isin(list(languages))
    if commands:
        keep &= frame["commands"].map(lambda v: bool(set(v) & set(commands)))
    if only_misses:
        keep &= frame["miss"]
    return frame[keep]


def _examples(services: Services, actor: Actor, run: door.RunRecord) -> None:
    st.subheader("Examples")
    frame = _examples_of(services.settings.resolved_database_url, run.id, run.status, run.example_count, services,
                         actor)
    if frame.empty:
        st.caption("This run kept no examples.")
        return
    state = st.session_state
    options = {F_ERROR: [k for k in ERROR_TYPES if any(k in v for v in frame["errors"])],
               F_LANGUAGE: sorted(set(frame["language"])),
               F_COMMAND: sorted({c for v in frame["commands"] for c in v})}
    for key, choices in options.items():  # another run: drop choices it does not have
        if not set(state.get(key) or ()) <= set(choices):
            state[key] = [v for v in state.get(key) or () if v in choices]
    cols = st.columns([2, 1, 2, 1], vertical_alignment="bottom")
    errors = cols[0].multiselect("Error type", options[F_ERROR], key=F_ERROR, placeholder="any",
                                 format_func=lambda k: ERROR_LABELS.get(k, k))
    languages = cols[1].multiselect("Language", options[F_LANGUAGE], key=F_LANGUAGE, placeholder="any")
    commands = cols[2].multiselect("Command", options[F_COMMAND], key=F_COMMAND, placeholder="any",
                                   help="Examples whose expected or produced program has it.")
    only_misses = cols[3].checkbox("Only misses", key=F_MISSES)
    shown = filtered(frame, errors=errors, languages=languages, commands=commands, only_misses=only_misses)
    misses = int(frame["miss"].sum())
    st.caption(f"{len(shown):,} of {len(frame):,} examples of run #{run.id} ({misses:,} with an error). The produced "
               "program is red where it differs from the expected one; “what differs” says how.")
    st.dataframe(_styled(shown[SHOWN_COLUMNS]), hide_index=True, key=EXAMPLES_TABLE,
                 column_config={"request": st.column_config.TextColumn(width="medium"),
                                "expected": st.column_config.TextColumn(width="medium"),
                                "produced": st.column_config.TextColumn(width="medium"),
                                "what differs": st.column_config.TextColumn(width="large")})
    st.download_button(f"Download these {len(shown):,} examples (CSV)", data=_csv_data(shown),
                       file_name=f"evaluation_run_{run.id}.csv", mime="text/csv", key=DOWNLOAD, on_click="ignore")


def _csv_data(frame: pd.DataFrame) -> Callable[[], bytes]:
    """The Download button's data, made only when clicked."""
    return lambda: examples_csv(frame)


def _styled(frame: pd.DataFrame) -> Any:
    """The produced program coloured by whether it is right; a large table is left plain."""
    if len(frame) > MAX_STYLED_ROWS:
        return frame
    right = frame["result"] == RIGHT

    def colour(column: pd.Series) -> list[str]:
        return [RIGHT_COLOUR if ok else MISS_COLOUR for ok in right.loc[column.index]]

    return frame.style.apply(colour, subset=["produced", "result"])
