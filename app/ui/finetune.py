"""The Fine-tuning page: admins LoRA-tune a local planner on a dataset version, watch it learn, and use a checkpoint.

Everything goes through the training door (``jobs.services.training``): a run is a ``finetune`` job on
the ``gpu`` lane; its loss curve, checkpoints and their evaluations (constrained and free decoding on
the val split) are what the worker stored, so the page and ``chatedit finetune`` never disagree.
While a run is active, or its checkpoints are still being evaluated, one fragment reads it again every
two seconds (progress, loss curve, checkpoints, validity by step); the rest of the page keeps still.
**Use as planner** registers a checkpoint so everyone can choose it in Settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app.ui.common import get_services, job_progress, when
from app.ui.identity import require_page
from core.planner_install import local_planner_model
from jobs.errors import JobNotFound
from jobs.services import Services, evaluations
from jobs.services import datasets as datasets_door
from jobs.services import training as door
from jobs.services.permissions import Actor, PermissionDenied

#: Widget keys of the start form.
BASE, DATASET, START = "finetune_base", "finetune_dataset", "finetune_start"
#: One widget key per hyper-parameter, by TrainingConfig field.
HYPER = {name: f"finetune_{name}" for name in (
    "steps", "batch_size", "gradient_accumulation", "learning_rate", "scheduler", "warmup_ratio", "lora_r",
    "lora_alpha", "lora_dropout", "checkpoint_every", "seed", "eval_limit")}
#: The run shown (its selectbox), and the run to show next (set by Start, applied before the selectbox exists).
RUN, GOTO = "finetune_run", "finetune_goto"
#: Actions on the run shown.
CANCEL, RESUME, RESUME_STEPS = "finetune_cancel", "finetune_resume", "finetune_resume_steps"
#: Use as planner.
CHECKPOINT, PLANNER_NAME, MAKE_DEFAULT, REGISTER = ("finetune_checkpoint", "finetune_planner_name",
                                                    "finetune_make_default", "finetune_register")
UNREGISTER_CHOICE, UNREGISTER = "finetune_unregister_choice", "finetune_unregister"
#: A sentence to show once after the page runs again (what the last action did).
NOTICE = "finetune_notice"

#: How often the run shown is read again while it trains or its checkpoints are evaluated, in seconds.
LIVE_S = 2.0
DECODINGS = ("constrained", "free")
#: The evaluation metrics the checkpoints table shows for each decoding, and the chart draws by step.
CHECKPOINT_METRICS = ("validity", "exact_match", "f1_micro")
CHART_METRICS = ("validity", "exact_match")
#: Short names of those metrics for column headers and the chart's legend (the Evaluation page has the long ones).
SHORT_LABELS = {"validity": "validity", "exact_match": "exact match", "f1_micro": "command F1"}
#: The validity-by-step lines, in the order of their names (validity, exact match; constrained, then free):
#: a dark and a light shade of one colour per decoding.
LINE_COLOURS = ["#1f5fa8", "#7fb0e8", "#c8553d", "#f0a48f"]
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
BASE_HELP = ("The local planner model to tune: a .gguf file, a Hugging Face id or a model directory "
             "(as CHATEDIT_LOCAL_LLM takes).")
STATUS_WORDS = {"queued": "queued", "running": "running", "succeeded": "finished", "failed": "failed",
                "cancelled": "cancelled"}


def render() -> None:
    actor = require_page("training.run", "The Fine-tuning page is for admins.")
    services = get_services()
    st.title("Fine-tuning")
    st.caption("LoRA-tune the local planner on a dataset version's train split; every checkpoint is evaluated on "
               "the val split, constrained and free, and any of them can become a planner everyone may choose.")
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.success(notice)
    _start(services, actor)
    runs = door.list_training_runs(services, actor)
    if not runs:
        st.info("No fine-tuning runs yet: start one above.")
        return
    _runs_table(runs)
    run = _chosen_run(runs)
    _run_view(services, actor, run)


# ---------------------------------------------------------------------- starting a run


def _start(services: Services, actor: Actor) -> None:
    st.header("Start a run")
    versions = [v for d in datasets_door.list_datasets(services, actor) for v in reversed(d.versions)]
    if not versions:
        st.info("There is no dataset to train on: import or generate one on the Datasets page, and split it.")
        return
    if BASE not in st.session_state:
        st.session_state[BASE] = local_planner_model(services.settings) or ""
    by_spec = {v.spec: v for v in versions}
    trainable = [v.spec for v in versions if v.split_counts.get("train")]
    if st.session_state.get(DATASET) not in by_spec:  # the newest trainable version, else the newest
        st.session_state[DATASET] = (trainable or list(by_spec))[0]
    left, right = st.columns(2)
    base = left.text_input("Base model", key=BASE, help=BASE_HELP, max_chars=500,
                           placeholder="a .gguf file, an HF id or a model directory")
    spec = right.selectbox("Dataset version", list(by_spec), key=DATASET,
                           format_func=lambda s: f"{s} · {_split_words(by_spec[s])}")
    if not by_spec[spec].split_counts.get("train"):
        right.caption(f"{spec} has no train split yet: split it on the Datasets page first.")
    values = _hyper_parameters()
    if not st.button("Start training", key=START, type="primary"):
        return
    try:
        run = door.start_training(services, actor, base_model=base, dataset=spec, config=values)
    except (door.TrainingError, door.InvalidTrainingConfig, datasets_door.DatasetError, PermissionDenied) as exc:
        st.error(f"{exc} Nothing was queued.")
        return
    st.session_state[GOTO] = run.id
    st.session_state[NOTICE] = (f"Run #{run.id} is queued: {run.total_steps:,} steps of {run.base_model} "
                                f"on {run.dataset}.")
    st.rerun()


def _split_words(version: datasets_door.VersionRecord) -> str:
    counts = version.split_counts
    if not counts.get("train"):
        return "not split" if not counts else "no train split"
    return f"train {counts['train']:,} · val {counts.get('val', 0):,}"


def _hyper_parameters() -> dict[str, Any]:
    """The hyper-parameters, each starting at TrainingConfig's default; checked by the door when the run starts."""
    fields = door.TrainingConfig.model_fields
    default = {name: fields[name].default for name in HYPER}
    with st.expander("Hyper-parameters", expanded=False):
        st.caption("LLaMA-Factory's LoRA SFT defaults (rank 8, all linear layers, lr 1e-4, cosine, warm-up 0.1). "
                   "Each checkpoint is stored and evaluated on the val split.")
        a, b, c = st.columns(3)
        values: dict[str, Any] = {
            "steps": a.number_input("Steps", min_value=1, value=default["steps"], step=50, key=HYPER["steps"],
                                    help="Optimiser steps in all."),
            "batch_size": b.number_input("Batch size", min_value=1, value=default["batch_size"],
                                         key=HYPER["batch_size"], help="Examples per forward pass."),
            "gradient_accumulation": c.number_input("Gradient accumulation", min_value=1,
                                                    value=default["gradient_accumulation"],
                                                    key=HYPER["gradient_accumulation"],
                                                    help="Forward passes per optimiser step."),
            "learning_rate": a.number_input("Learning rate", min_value=0.0, value=default["learning_rate"],
                                            step=1e-5, format="%.6f", key=HYPER["learning_rate"]),
            "scheduler": b.selectbox("Scheduler", SCHEDULERS, index=SCHEDULERS.index(default["scheduler"]),
                                     key=HYPER["scheduler"]),
            "warmup_ratio": c.number_input("Warm-up ratio", min_value=0.0, value=default["warmup_ratio"], step=0.05,
                                           format="%.2f", key=HYPER["warmup_ratio"],
                                           help="The share of the steps the learning rate rises over."),
            "lora_r": a.number_input("LoRA r", min_value=1, value=default["lora_r"], key=HYPER["lora_r"],
                                     help="The rank of each LoRA update."),
            "lora_alpha": b.number_input("LoRA alpha", min_value=1, value=default["lora_alpha"],
                                         key=HYPER["lora_alpha"], help="The update is scaled by alpha / r."),
            "lora_dropout": c.number_input("LoRA dropout", min_value=0.0, value=default["lora_dropout"], step=0.05,
                                           format="%.2f", key=HYPER["lora_dropout"]),
            "checkpoint_every": a.number_input("Checkpoint every (steps)", min_value=1,
                                               value=default["checkpoint_every"], step=10,
                                               key=HYPER["checkpoint_every"],
                                               help="Each checkpoint is stored and evaluated on the val split."),
            "seed": b.number_input("Seed", min_value=0, value=default["seed"], key=HYPER["seed"]),
            "eval_limit": c.number_input("Evaluation examples (0: all)", min_value=0,
                                         value=default["eval_limit"] or 0, step=16, key=HYPER["eval_limit"],
                                         help="How many val examples each checkpoint is evaluated on."),
        }
    values["eval_limit"] = int(values["eval_limit"]) or None
    return values


# ---------------------------------------------------------------------- the runs


def _runs_table(runs: Sequence[door.TrainingRunRecord]) -> None:
    st.header("Runs")
    lines = [{"run": r.id, "base": _short(r.base_model), "dataset": r.dataset, "status": r.status,
              "step": f"{r.step:,}/{r.total_steps:,}", "by": r.created_by, "started": when(r.created_at)}
             for r in runs]
    st.dataframe(pd.DataFrame(lines), hide_index=True,
                 column_config={"run": st.column_config.NumberColumn(format="#%d"),
                                "base": st.column_config.TextColumn(width="medium")})


def _short(base_model: str) -> str:
    return base_model.rstrip("/").rsplit("/", 1)[-1]


def _chosen_run(runs: Sequence[door.TrainingRunRecord]) -> door.TrainingRunRecord:
    """The run shown: one just started, else the one chosen (or named by ?run=N), else the newest."""
    by_id = {r.id: r for r in runs}
    state = st.session_state
    goto = state.pop(GOTO, None)
    if goto in by_id:
        state[RUN] = goto
    elif state.get(RUN) not in by_id:
        asked = st.query_params.get("run", "")
        state[RUN] = int(asked) if asked.isdigit() and int(asked) in by_id else runs[0].id
    chosen = st.selectbox("Run", list(by_id), key=RUN,
                          format_func=lambda i: f"{by_id[i].label} · {STATUS_WORDS.get(by_id[i].status, '')}")
    st.query_params["run"] = str(chosen)
    return by_id[chosen]


def _run_view(services: Services, actor: Actor, run: door.TrainingRunRecord) -> None:
    points = door.checkpoints(services, actor, run.id)
    live = _unsettled(run, points)
    # The fragment reruns the whole page when the run stops or settles, so what follows is never stale for long.
    st.fragment(_run_live, run_every=LIVE_S if live else None)(run.id, live, run.active)
    if not run.active:
        _resume(services, actor, run)
    _use_as_planner(services, actor, run, points)


def _unsettled(run: door.TrainingRunRecord, points: Sequence[door.CheckpointRecord]) -> bool:
    """Whether the run still changes: it trains, or a checkpoint's evaluation is not done."""
    return run.active or any(_eval_state(e) in ("queued", "running") for c in points for e in c.evaluations.values())


def _eval_state(run: evaluations.RunRecord | None) -> str:
    return "queued" if run is None else run.status


def _run_live(run_id: int, live: bool, active: bool) -> None:
    """The run's state, loss curve, checkpoints and validity by step (read again every LIVE_S while it changes)."""
    services = get_services()
    actor = require_page("training.run", "The Fine-tuning page is for admins.")
    run = door.get_training_run(services, actor, run_id)
    points = door.checkpoints(services, actor, run_id)
    if (live and not _unsettled(run, points)) or (active and not run.active):
        st.rerun()  # it stopped or settled: the whole page shows it (Resume, the new checkpoints)
    st.header(run.label)
    _state(services, actor, run)
    _loss_curve(door.training_steps(services, actor, run_id), run)
    _checkpoints(points, run)


def _state(services: Services, actor: Actor, run: door.TrainingRunRecord) -> None:
    config = run.config
    st.caption(f"{STATUS_WORDS.get(run.status, run.status).capitalize()} · step {run.step:,} of {run.total_steps:,} · "
               f"batch {config.batch_size} × {config.gradient_accumulation} · lr {config.learning_rate:g} "
               f"({config.scheduler}) · LoRA r {config.lora_r}, alpha {config.lora_alpha} · seed {config.seed} · "
               f"by {run.created_by} on {when(run.created_at)}")
    if run.active and run.job_id is not None:
        try:
            job = services.queue.get(run.job_id)
        except JobNotFound:
            job = None
        if job is not None and not job.terminal:
            job_progress(services, job, f"Training run #{run.id}")
            if st.button("Cancel", key=CANCEL, disabled=job.cancel_requested,
                         help="Stops at the next step and keeps a checkpoint there, so the run can be resumed."):
                door.cancel_training(services, actor, run.id)
                st.rerun()
    if run.status == "failed":
        st.error(f"Run #{run.id} failed: {(run.error or 'no reason was recorded').rstrip('.')}.")
    elif run.status == "cancelled":
        st.warning(f"Run #{run.id} was cancelled at step {run.step:,}; resume it below from its last checkpoint.")
    elif run.status == "succeeded":
        wall = run.details.get("wall_s")
        st.success(f"Run #{run.id} trained {run.step:,} steps" + (f" in {wall:,.0f} s" if wall else "")
                   + (f" on {run.details['device']}" if run.details.get("device") else "") + ".")


def _loss_curve(steps: Sequence[door.StepRecord], run: door.TrainingRunRecord) -> None:
    st.subheader("Loss")
    if not steps:
        st.caption("No step logged yet." if run.active else "This run logged no step.")
        return
    frame = pd.DataFrame([{"step": s.step, "loss": s.loss, "learning rate": s.learning_rate,
                           "tokens/s": s.tokens_per_s} for s in steps])
    x = _step_axis(run, int(frame["step"].max()))
    loss = alt.Chart(frame).mark_line(point=len(frame) <= 60).encode(
        x=x, y=alt.Y("loss:Q", title="loss"),
        tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("learning rate:Q", format=".2e"),
                 alt.Tooltip("tokens/s:Q", format=",.0f")])
    rate = alt.Chart(frame).mark_line(color="#888").encode(
        x=x, y=alt.Y("learning rate:Q", title="learning rate", axis=alt.Axis(format=".1e")),
        tooltip=["step:Q", alt.Tooltip("learning rate:Q", format=".2e")]).properties(height=150)
    st.altair_chart(loss, width="stretch")
    st.altair_chart(rate, width="stretch")


def _step_axis(run: door.TrainingRunRecord, last: int) -> alt.X:
    """Steps from 0 to the run's total, in whole steps: the curves of a run in progress keep their scale."""
    return alt.X("step:Q", title="step", scale=alt.Scale(domain=[0, max(run.total_steps, last)]),
                 axis=alt.Axis(tickMinStep=1, format="d"))


# ---------------------------------------------------------------------- checkpoints


def _metric_cell(run: evaluations.RunRecord | None, name: str) -> str:
    """A checkpoint's metric as the table shows it: the value once its evaluation finished, else its state."""
    if run is None or run.status != "succeeded":
        return _eval_state(run)
    return evaluations.format_metric(name, (run.metrics.get("scalars") or {}).get(name))


def _checkpoints(points: Sequence[door.CheckpointRecord], run: door.TrainingRunRecord) -> None:
    st.subheader("Checkpoints")
    if not points:
        st.caption(f"A checkpoint is stored every {run.config.checkpoint_every:,} steps; none yet.")
        return
    lines = []
    for point in points:
        line: dict[str, Any] = {"step": point.step, "planner": point.planner_name or "",
                                "loss": None if point.loss is None else round(point.loss, 4)}
        for decoding in DECODINGS:
            evaluation = point.evaluations.get(decoding)
            for name in CHECKPOINT_METRICS:
                line[f"{SHORT_LABELS[name]} · {decoding}"] = (
                    _metric_cell(evaluation, name) if decoding in point.evaluations else "not evaluated")
        lines.append(line)
    st.dataframe(pd.DataFrame(lines), hide_index=True)
    if not run.details.get("val_examples"):
        st.caption(f"{run.dataset} has no val split, so its checkpoints are not evaluated.")
    chart = _by_step(points, run)
    if chart is not None:
        st.subheader("Validity by step")
        st.altair_chart(chart, width="stretch")


def _by_step(points: Sequence[door.CheckpointRecord], run: door.TrainingRunRecord) -> alt.Chart | None:
    """Validity and exact match of each evaluated checkpoint by step: one line per metric and decoding."""
    lines = [{"step": point.step, "decoding": decoding, "metric": SHORT_LABELS[name],
              "value": float(value)}
             for point in points for decoding, run in point.evaluations.items()
             if run is not None and run.status == "succeeded"
             for name in CHART_METRICS if (value := (run.metrics.get("scalars") or {}).get(name)) is not None]
    if not lines:
        return None
    labels = [SHORT_LABELS[n] for n in CHART_METRICS]
    order = [f"{label} · {decoding}" for decoding in DECODINGS for label in labels]
    for line in lines:
        line["line"] = f"{line['metric']} · {line['decoding']}"
    return alt.Chart(pd.DataFrame(lines)).mark_line(point=True).encode(
        x=_step_axis(run, max(p.step for p in points)),
        y=alt.Y("value:Q", title="share of val examples", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("line:N", sort=order, title=None, scale=alt.Scale(range=LINE_COLOURS)),
        strokeDash=alt.StrokeDash("metric:N", sort=labels, legend=None),
        tooltip=["step:Q", "decoding:N", "metric:N", alt.Tooltip("value:Q", format=".1%")])


# ---------------------------------------------------------------------- actions on a stopped run


def _resume(services: Services, actor: Actor, run: door.TrainingRunRecord) -> None:
    if run.status == "succeeded":
        label, default = "Train on", run.total_steps + run.config.checkpoint_every
    else:
        label, default = "Resume", run.total_steps
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    steps = left.number_input("Steps in all", min_value=1, value=default, step=run.config.checkpoint_every,
                              key=f"{RESUME_STEPS}_{run.id}", help="The run goes on from its last checkpoint to this "
                              "many steps in all; its step count and loss curve continue.")
    if not right.button(label, key=RESUME):
        return
    try:
        resumed = door.resume_training(services, actor, run.id, steps=int(steps))
    except (door.TrainingError, door.InvalidTrainingConfig, PermissionDenied) as exc:
        st.error(f"{exc} Nothing was queued.")
        return
    st.session_state[NOTICE] = f"Run #{resumed.id} is queued again, to {resumed.total_steps:,} steps."
    st.rerun()


def default_planner_name(run: door.TrainingRunRecord, step: int) -> str:
    """A name for a checkpoint as a planner: "smollm2-seed-step300" (base model, dataset, step)."""
    base = _short(run.base_model).lower()
    base = re.sub(r"\.gguf$", "", base)
    base = re.split(r"[-_.]", base)[0] or "planner"
    dataset = run.dataset.split("@", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_.-]+", "-", f"{base}-{dataset}-step{step}").strip("-.")
    return name[:64]


def _best(points: Sequence[door.CheckpointRecord]) -> door.CheckpointRecord:
    """The checkpoint offered first: the best free-decoding exact match, then validity, then the later step."""
    def score(point: door.CheckpointRecord) -> tuple[float, float, float, float, int]:
        def value(decoding: str, name: str) -> float:
            run = point.evaluations.get(decoding)
            if run is None or run.status != "succeeded":
                return -1.0
            return float((run.metrics.get("scalars") or {}).get(name) or 0.0)
        return (value("free", "exact_match"), value("free", "validity"), value("constrained", "exact_match"),
                value("constrained", "validity"), point.step)
    return max(points, key=score)


def _use_as_planner(services: Services, actor: Actor, run: door.TrainingRunRecord,
                    points: Sequence[door.CheckpointRecord]) -> None:
    st.header("Use as planner")
    if not points:
        st.caption("A checkpoint of this run can become a planner once one is stored.")
        return
    by_id = {p.id: p for p in points}
    if st.session_state.get(CHECKPOINT) not in by_id:
        st.session_state[CHECKPOINT] = _best(points).id
    left, right = st.columns(2)
    chosen = by_id[left.selectbox(
        "Checkpoint", list(by_id), key=CHECKPOINT,
        format_func=lambda i: f"step {by_id[i].step:,}" + (f" (registered as {by_id[i].planner_name})"
                                                            if by_id[i].planner_name else ""))]
    name_key = f"{PLANNER_NAME}_{chosen.id}"
    if name_key not in st.session_state:
        st.session_state[name_key] = default_planner_name(run, chosen.step)
    name = right.text_input("Planner name", key=name_key, max_chars=64,
                            help="Letters, digits, '.', '_' or '-'; Settings lists the planner under this name.")
    make_default = st.checkbox("Make it the team's default planner", key=MAKE_DEFAULT,
                               help="It then answers everyone who chose no fine-tuned planner of their own.")
    if st.button("Use as planner", key=REGISTER, type="primary"):
        try:
            model = door.register_planner(services, actor, chosen.id, name, make_default=make_default)
        except (door.TrainingError, PermissionDenied) as exc:
            st.error(f"{exc} Nothing was registered.")
        else:
            st.session_state[NOTICE] = (
                f"{model.name} (step {chosen.step:,} of run #{run.id}) is a planner now: everyone can choose it in "
                "Settings (Fine-tuned planner, with the local planner)."
                + (" It is the team's default planner." if model.is_default else ""))
            st.rerun()
    _registered(services, actor)


def _registered(services: Services, actor: Actor) -> None:
    """Every registered planner (of any run), and Remove: a bad one leaves Settings; its checkpoint stays."""
    models = door.planner_models(services)
    if not models:
        return
    st.subheader("Registered planners")
    st.dataframe(pd.DataFrame([{"planner": m.name, "run": m.run_id, "step": m.step, "base": _short(m.base_model),
                                "team default": "yes" if m.is_default else "", "by": m.registered_by,
                                "registered": when(m.created_at)} for m in models]), hide_index=True)
    by_id = {m.id: m for m in models}
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Planner to remove", list(by_id), key=UNREGISTER_CHOICE,
                            format_func=lambda i: by_id[i].name)
    if not right.button("Remove", key=UNREGISTER):
        return
    try:
        removed = door.unregister_planner(services, actor, chosen)
    except (door.TrainingError, PermissionDenied) as exc:
        st.error(str(exc))
        return
    st.session_state[NOTICE] = (f"{removed.name} is no longer offered in Settings; whoever chose it gets the team's "
                                "default fine-tuned planner.")
    st.rerun()
