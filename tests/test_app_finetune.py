"""The Fine-tuning page as an admin uses it: a run started from the form (bad values refused with the sentence, and
nothing queued), a finished run of the tiny model (loss curve, checkpoints with their evaluations, validity by step),
a checkpoint used as a planner that Settings then offers to everyone; anyone but an admin is refused."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app.ui.finetune import (
    BASE,
    CHECKPOINT,
    DATASET,
    HYPER,
    MAKE_DEFAULT,
    PLANNER_NAME,
    REGISTER,
    RUN,
    START,
    default_planner_name,
)
from app.ui.identity import ACTOR_KEY
from finetune.dataset_rows import DatasetRow
from jobs.queue import JobStatus
from jobs.services import Services, datasets, training
from jobs.user_settings import get_preferences
from tests.conftest import running_worker
from tests.finetune_support import MEMO_CONFIG, finish_training, make_memo_dataset, save_tiny_base
from tests.team_support import Team, make_team, open_app_as

VIEW = str(Path(__file__).parents[1] / "app" / "views" / "finetune.py")


@pytest.fixture
def team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    monkeypatch.delenv("CHATEDIT_LOCAL_LLM", raising=False)
    return make_team(app_env)


def _data(chart) -> list[dict]:  # type: ignore[no-untyped-def]
    """The data rows a chart draws."""
    return [row for data in chart.proto.datasets for row in pa.ipc.open_stream(data.data.data).read_all().to_pylist()]


def _charts(at: AppTest) -> dict[str, list[dict]]:
    """Each chart's data by the field its y axis encodes."""
    return {json.loads(c.proto.spec)["encoding"]["y"]["field"]: _data(c) for c in at.get("vega_lite_chart")}


def _table(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _progress_while_training(at: AppTest, timeout_s: float = 300) -> str:
    """The page's progress line once the worker has logged a step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        texts = [bar.proto.text for bar in at.get("progress")]
        if any(" · step " in t for t in texts):
            return texts[0]
        assert texts, "the run ended before the page saw it train"
        time.sleep(0.2)
    raise AssertionError("the page never showed a training step")


def _unsplit(services: Services, team: Team) -> None:
    row = DatasetRow(request="make it brighter", language="en", labels=("Background",),
                     commands=({"command": "adjust", "paras": ["brightness", 0.3, []]},), source="template",
                     checks={"contract": True})
    datasets.create_version(services, team.admin, "unsplit", [row], note="not split")


def test_a_run_is_started_from_the_form_and_bad_values_are_refused(app_env: Services, team: Team, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base = str(tmp_path / "base-model")
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", base)  # the local planner's model is the base offered
    spec = make_memo_dataset(app_env, team.admin)
    _unsplit(app_env, team)
    at = open_app_as(team.token(team.admin), page="finetune")
    assert not at.exception, at.exception
    assert at.title[0].value == "Fine-tuning"
    assert at.info[0].value == "No fine-tuning runs yet: start one above."
    assert at.text_input(key=BASE).value == base
    assert at.selectbox(key=DATASET).value == spec  # the version that has a train split
    assert at.selectbox(key=DATASET).options == ["memo@1 · train 2 · val 2", "unsplit@1 · not split"]
    defaults = training.TrainingConfig()
    assert at.number_input(key=HYPER["steps"]).value == defaults.steps == 300
    assert at.number_input(key=HYPER["lora_r"]).value == 8 and at.number_input(key=HYPER["lora_alpha"]).value == 16
    assert at.number_input(key=HYPER["learning_rate"]).value == pytest.approx(1e-4)
    assert at.selectbox(key=HYPER["scheduler"]).value == "cosine"

    at.number_input(key=HYPER["warmup_ratio"]).set_value(0.9)
    at.number_input(key=HYPER["steps"]).set_value(20)
    at.button(key=START).click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["These training settings cannot be used: warmup_ratio: input should be "
                                           "less than or equal to 0.5. Nothing was queued."]
    assert app_env.queue.list() == []
    # nothing the person typed is lost
    assert at.number_input(key=HYPER["warmup_ratio"]).value == 0.9 and at.number_input(key=HYPER["steps"]).value == 20
    assert at.text_input(key=BASE).value == base

    at.number_input(key=HYPER["warmup_ratio"]).set_value(0.1)
    at.selectbox(key=DATASET).set_value("unsplit@1")
    at.button(key=START).click().run()
    assert [e.value for e in at.error] == ["unsplit@1 has no train split: split it first (the Datasets page, or "
                                           "`chatedit datasets split unsplit`). Nothing was queued."]
    assert any(c.value == "unsplit@1 has no train split yet: split it on the Datasets page first." for c in at.caption)
    assert app_env.queue.list() == []

    at.selectbox(key=DATASET).set_value(spec)
    at.button(key=START).click().run()
    assert not at.exception, at.exception
    (job,) = app_env.queue.list()
    assert (job.kind, job.lane, job.status) == ("finetune", "gpu", JobStatus.QUEUED)
    (run,) = training.list_training_runs(app_env, team.admin)
    assert (run.base_model, run.dataset, run.total_steps, run.config.warmup_ratio) == (base, spec, 20, 0.1)
    assert [s.value for s in at.success] == [f"Run #{run.id} is queued: 20 steps of {base} on {spec}."]
    rows = _table(at, "step").to_dict("records")
    assert rows == [{"run": run.id, "base": "base-model", "dataset": spec, "status": "queued", "step": "0/20",
                     "by": "Ada", "started": rows[0]["started"]}] and rows[0]["started"]
    assert at.selectbox(key=RUN).value == run.id
    (bar,) = at.get("progress")
    assert "no worker serving the 'gpu' lane is alive" in bar.proto.text

    # Cancel while it waits: the run is cancelled at once (no worker will ever say so), and can be resumed.
    at.button(key="finetune_cancel").click().run()
    assert not at.exception, at.exception
    assert app_env.queue.get(job.id).status is JobStatus.CANCELLED
    assert training.get_training_run(app_env, team.admin, run.id).status == "cancelled"
    assert [w.value for w in at.warning] == [f"Run #{run.id} was cancelled at step 0; resume it below from its last "
                                             "checkpoint."]
    at.button(key="finetune_resume").click().run()
    assert [e.value for e in at.error] == [f"Training run {run.id} stored no checkpoint, so there is nothing to "
                                           "resume from; start a new run instead. Nothing was queued."]


def test_a_finished_run_shows_its_curve_and_checkpoints_and_becomes_a_planner(app_env: Services, team: Team,
                                                                              tmp_path: Path) -> None:
    base = save_tiny_base(tmp_path / "tiny")
    spec = make_memo_dataset(app_env, team.admin)
    run = training.start_training(app_env, team.admin, base_model=str(base), dataset=spec, config=MEMO_CONFIG)
    at = open_app_as(team.token(team.admin), page="finetune", run=str(run.id))
    with running_worker(app_env, lanes=["gpu"]):  # watched while it trains: the job's progress line and Cancel
        line = _progress_while_training(at)
        assert re.fullmatch(rf"Training run #{run.id}… \d+% · step \d+ of 12 · loss [\d.e+-]+( · .*)?", line), line
        assert any(b.key == "finetune_cancel" for b in at.button)
        assert finish_training(app_env, run.id).status is JobStatus.SUCCEEDED

    at = open_app_as(team.token(team.admin), page="finetune", run=str(run.id))
    assert not at.exception, at.exception
    assert at.selectbox(key=RUN).value == run.id
    assert at.success[0].value.startswith(f"Run #{run.id} trained 12 steps in ")
    assert not at.get("progress") and not any(b.key == "finetune_cancel" for b in at.button)

    charts = _charts(at)
    loss = [(p["step"], p["loss"]) for p in charts["loss"]]
    stored = training.training_steps(app_env, team.admin, run.id)
    assert loss == [(s.step, s.loss) for s in stored] and [s for s, _ in loss] == list(range(1, 13))
    assert loss[-1][1] < loss[0][1] / 10, "the memorisable set is learnt"
    assert [p["learning rate"] for p in charts["learning rate"]] == [s.learning_rate for s in stored]

    table = _table(at, "planner").to_dict("records")
    assert [r["step"] for r in table] == [6, 12]
    final = table[-1]
    assert final["validity · constrained"] == "100.0%", final
    for decoding in ("constrained", "free"):
        for label in ("validity", "exact match", "command F1"):
            assert final[f"{label} · {decoding}"].endswith("%"), (label, decoding, final)
    assert final["planner"] == ""

    points = training.checkpoints(app_env, team.admin, run.id)
    by_step = {(p["step"], p["decoding"], p["metric"]): p["value"] for p in charts["value"]}
    for point in points:
        for decoding, evaluation in point.evaluations.items():
            assert evaluation is not None and evaluation.status == "succeeded", (point.step, decoding)
            assert by_step[(point.step, decoding, "validity")] == evaluation.metrics["scalars"]["validity"]
            assert by_step[(point.step, decoding, "exact match")] == evaluation.metrics["scalars"]["exact_match"]
    assert by_step[(12, "constrained", "validity")] == 1.0

    # Use the final checkpoint as a planner, the team's default.
    last = points[-1]
    at.selectbox(key=CHECKPOINT).set_value(last.id).run()
    name_input = at.text_input(key=f"{PLANNER_NAME}_{last.id}")
    assert name_input.value == default_planner_name(run, 12) == "tiny-memo-step12"
    at.checkbox(key=MAKE_DEFAULT).check()
    at.button(key=REGISTER).click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success][0] == (
        f"tiny-memo-step12 (step 12 of run #{run.id}) is a planner now: everyone can choose it in Settings "
        "(Fine-tuned planner, with the local planner). It is the team's default planner.")
    (model,) = training.planner_models(app_env)
    assert (model.name, model.checkpoint_id, model.is_default) == ("tiny-memo-step12", last.id, True)
    assert _table(at, "planner").to_dict("records")[-1]["planner"] == "tiny-memo-step12"
    at.button(key=REGISTER).click().run()  # the same name again: the sentence, nothing registered
    assert [e.value for e in at.error] == ["There is a planner called 'tiny-memo-step12' already; choose another "
                                           "name. Nothing was registered."]
    assert len(training.planner_models(app_env)) == 1

    # Settings offers it to everyone; an editor chooses it, and an admin sets the team default.
    settings = open_app_as(team.token(team.editor), page="settings")
    assert not settings.exception, settings.exception
    choice = settings.selectbox(key="pref_fine_tuned_planner")
    assert choice.options == ["team default (tiny-memo-step12)", f"tiny-memo-step12 (run {run.id}, step 12)"]
    assert choice.value == ""
    assert not any(s.key == "team_default_planner" for s in settings.selectbox), "only admins choose the default"
    choice.set_value("tiny-memo-step12")
    next(b for b in settings.button if b.label == "Save settings").click().run()
    assert not settings.exception, settings.exception
    assert get_preferences(app_env, team.editor.id)["fine_tuned_planner"] == "tiny-memo-step12"
    assert settings.selectbox(key="pref_fine_tuned_planner").value == "tiny-memo-step12"
    assert training.planner_choice(app_env, get_preferences(app_env, team.editor.id)).model == model
    settings.selectbox(key="pref_fine_tuned_planner").set_value("")  # back to the team's
    next(b for b in settings.button if b.label == "Save settings").click().run()
    assert "fine_tuned_planner" not in get_preferences(app_env, team.editor.id)

    admin_settings = open_app_as(team.token(team.admin), page="settings")
    default = admin_settings.selectbox(key="team_default_planner")
    assert default.value == model.id
    default.select_index(0).run()
    admin_settings.button(key="set_team_default").click().run()
    assert not admin_settings.exception, admin_settings.exception
    assert admin_settings.success[0].value == "The team has no default fine-tuned planner now."
    assert not training.planner_models(app_env)[0].is_default
    assert admin_settings.selectbox(key="pref_fine_tuned_planner").options[0] == \
        "team default (none: the local planner's base model)"

    # A planner that turned out badly is removed from the Fine-tuning page; its checkpoint stays.
    at = open_app_as(team.token(team.admin), page="finetune", run=str(run.id))
    assert _table(at, "team default").to_dict("records")[0]["planner"] == "tiny-memo-step12"
    at.button(key="finetune_unregister").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value == ("tiny-memo-step12 is no longer offered in Settings; whoever chose it gets the "
                                   "team's default fine-tuned planner.")
    assert training.planner_models(app_env) == [] and len(training.checkpoints(app_env, team.admin, run.id)) == 2
    assert training.planner_choice(app_env, {"planner": "local", "fine_tuned_planner": "tiny-memo-step12"}).model \
        is None


def test_an_editor_has_no_finetune_page(team: Team) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_app_as(team.token(team.editor), page="finetune")
    direct = AppTest.from_file(VIEW, default_timeout=60)
    direct.session_state[ACTOR_KEY] = team.editor
    direct.run()
    assert not direct.exception, direct.exception
    assert [e.value for e in direct.error] == ["Ed (editor) may not run fine-tuning. The Fine-tuning page is for "
                                               "admins."]
    assert not direct.dataframe and not direct.button and not direct.text_input
