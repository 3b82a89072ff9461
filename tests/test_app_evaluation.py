"""The Evaluation page as an admin uses it: two stored runs (the dataset's own commands and the rule planner) in the
runs table, compared side by side in charts, one opened up (confusion matrix, error types, every example with what
differs, filters, CSV); a run started and watched through the page with a real worker. Anyone else is refused."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app.ui.evaluation import COMPARE, F_ERROR, F_LANGUAGE, F_MISSES, RUN, examples_csv, examples_frame
from app.ui.identity import ACTOR_KEY
from finetune.dataset_rows import DatasetRow
from finetune.metrics import METRIC_LABELS, METRIC_NAMES
from jobs.queue import JobStatus
from jobs.services import Services, datasets, evaluations
from tests.conftest import running_worker
from tests.team_support import Team, make_team, open_app_as

VIEW = str(Path(__file__).parents[1] / "app" / "views" / "evaluation.py")
LABELS = ("Background", "Hair", "Upper-clothes", "Face", "Pants")
#: (request, expected commands, language). The last two expect what no planner reading the request would write
#: (the pants' colour on the hair; orange for 红色), so the rule planner misses them for sure.
ROWS = [("make the shirt red", [{"command": "recolor", "paras": [["Upper-clothes"], "red"]}], "en"),
        ("blur the background", [{"command": "blur", "paras": [["Background"], 0.5]}], "en"),
        ("把头发染成蓝色", [{"command": "recolor", "paras": [["Hair"], "blue"]}], "zh"),
        ("make it brighter", [{"command": "adjust", "paras": ["brightness", 0.3, []]}], "en"),
        ("make the pants green", [{"command": "recolor", "paras": [["Hair"], "green"]}], "en"),
        ("把衣服变成红色", [{"command": "recolor", "paras": [["Upper-clothes"], "orange"]}], "zh")]
PLANTED = {"make the pants green", "把衣服变成红色"}


def _rows() -> list[DatasetRow]:
    return [DatasetRow(request=r, language=lang, labels=LABELS, commands=tuple(c), source="template",
                       checks={"contract": True}, split="test") for r, c, lang in ROWS]


@pytest.fixture
def team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    monkeypatch.delenv("CHATEDIT_LOCAL_LLM", raising=False)
    monkeypatch.delenv("CHATEDIT_OPENAI_MODEL", raising=False)
    t = make_team(app_env)
    datasets.create_version(app_env, t.admin, "tiny", _rows(), note="by hand", split_seed=0)
    return t


@pytest.fixture
def two_runs(app_env: Services, team: Team) -> tuple[evaluations.RunRecord, evaluations.RunRecord]:
    """Run 1: the dataset's own commands; run 2: the rule planner; both on tiny@1/test."""
    jobs = [evaluations.submit_run(app_env, team.admin, planner=p, dataset="tiny", split="test")
            for p in ("reference", "rules")]
    with running_worker(app_env, lanes=["batch"]):
        for job_id in jobs:
            assert app_env.queue.wait(job_id, timeout_s=120).status is JobStatus.SUCCEEDED
    runs = [evaluations.run_of_job(app_env, team.admin, j) for j in jobs]
    assert all(r is not None for r in runs)
    return runs[0], runs[1]  # type: ignore[return-value]


def _data(chart) -> list[dict]:  # type: ignore[no-untyped-def]
    """The data rows a chart draws."""
    return [row for data in chart.proto.datasets for row in pa.ipc.open_stream(data.data.data).read_all().to_pylist()]


def _table(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    """A table of the page by a column only it has, as a pandas frame."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _charts(at: AppTest) -> dict[str, list[dict]]:
    """Each chart's data by what it shows (the field its y axis encodes)."""
    charts = {}
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        layer = spec["layer"][0] if "layer" in spec else spec
        y = layer["encoding"]["y"]["field"]
        key = y if y not in charts else f"{y}#{sum(k.startswith(y) for k in charts)}"
        charts[key] = _data(chart)
    return charts


def test_an_admin_compares_two_runs_and_opens_one_up(app_env: Services, team: Team, two_runs) -> None:  # type: ignore[no-untyped-def]
    reference, rules = two_runs
    at = open_app_as(team.token(team.admin), page="evaluation")
    assert not at.exception, at.exception
    assert at.title[0].value == "Evaluation"

    runs = _table(at, "status").to_dict("records")
    assert [(r["run"], r["status"], r["examples"], r["by"]) for r in runs] == [
        (f"#{rules.id} rules on tiny@1/test", "succeeded", 6, "Ada"),
        (f"#{reference.id} reference on tiny@1/test", "succeeded", 6, "Ada")]
    assert runs[1][METRIC_LABELS["exact_match"]] == 100.0
    assert runs[0][METRIC_LABELS["exact_match"]] < 100.0

    at.multiselect(key=COMPARE).set_value([reference.id, rules.id]).run()
    assert not at.exception, at.exception
    every = _table(at, "metric").set_index("metric")
    assert list(every.index) == [METRIC_LABELS[n] for n in METRIC_NAMES]
    assert every.loc[METRIC_LABELS["exact_match"], reference.label] == "100.0%"
    rules_exact = rules.metrics["scalars"]["exact_match"]
    assert every.loc[METRIC_LABELS["exact_match"], rules.label] == f"{rules_exact:.1%}"

    charts = _charts(at)
    # every metric, per command, per language (en and zh), the confusion matrix and the error types
    assert len(at.get("vega_lite_chart")) == 6
    bars = {(b["metric"], b["run"]): b["value"] for b in charts["metric"]}
    assert bars[(METRIC_LABELS["exact_match"], reference.label)] == 1.0
    assert bars[(METRIC_LABELS["exact_match"], rules.label)] == pytest.approx(rules_exact) and rules_exact < 1.0
    assert {run for _, run in bars} == {reference.label, rules.label}
    commands = {(b["command"], b["run"]): b["value"] for b in charts["command"]}
    assert commands[("recolor", reference.label)] == 1.0 and commands[("recolor", rules.label)] < 1.0
    languages = [charts["metric#1"], charts["metric#2"]]
    assert all({b["run"] for b in lang} == {reference.label, rules.label} for lang in languages)

    # The run opened up: by default the newest (the rule planner's).
    assert at.selectbox(key=RUN).value == rules.id
    confusion = {(c["expected"], c["produced"]): c["pairs"] for c in charts["expected"]}
    assert confusion == {(want, got): n for want, row in rules.metrics["confusion"].items() for got, n in row.items()}
    assert confusion[("recolor", "recolor")] >= 2
    errors = {e["error"]: e["examples"] for e in charts["error"]}
    assert errors["wrong target"] >= 1 and errors["wrong para"] >= 1 and errors["unparsable reply"] == 0

    table = _table(at, "what differs")
    assert len(table) == 6
    pants = table[table["request"] == "make the pants green"].iloc[0]
    assert (pants["expected"], pants["produced"], pants["result"]) == \
        ("Recolor the Hair to green", "Recolor the Pants to green", "wrong target")
    assert pants["what differs"] == "recolor on ['Pants'], expected on ['Hair']."
    at.checkbox(key=F_MISSES).check().run()
    misses = _table(at, "what differs")
    assert PLANTED <= set(misses["request"]) and 2 <= len(misses) < 6
    assert "right" not in set(misses["result"])
    at.multiselect(key=F_LANGUAGE).set_value(["zh"]).run()
    assert "把衣服变成红色" in set(_table(at, "what differs")["request"])
    assert set(_table(at, "what differs")["language"]) == {"zh"}
    at.multiselect(key=F_LANGUAGE).set_value([])
    at.multiselect(key=F_ERROR).set_value(["wrong_para"]).run()
    assert "把衣服变成红色" in set(_table(at, "what differs")["request"])
    assert "make the pants green" not in set(_table(at, "what differs")["request"])
    (download,) = [b for b in at.get("download_button") if b.label.startswith("Download these")]
    shown = len(_table(at, "what differs"))
    assert download.label == f"Download these {shown} examples (CSV)"

    # What the button hands over: one CSV line per example with the programs in words and as JSON.
    frame = examples_frame(evaluations.run_examples(app_env, team.admin, rules.id))
    lines = list(csv.DictReader(io.StringIO(examples_csv(frame).decode("utf-8-sig"))))
    assert [line["request"] for line in lines] == [r for r, _, _ in ROWS]
    pants_line = next(line for line in lines if line["request"] == "make the pants green")
    assert json.loads(pants_line["expected JSON"]) == ROWS[4][1]
    assert pants_line["result"] == "wrong target" and pants_line["produced"] == "Recolor the Pants to green"
    assert not at.exception, at.exception


def _until_done(at: AppTest, *, timeout_s: float = 60.0) -> AppTest:
    """Run the page until the run it watches has ended and the page says so."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if at.success or at.error:
            return at
        time.sleep(0.2)
    raise AssertionError("the page never said the run ended")


def test_a_run_started_on_the_page_is_watched_and_opened(app_env: Services, team: Team) -> None:
    at = open_app_as(team.token(team.admin), page="evaluation")
    assert at.info[0].value.startswith("No evaluation runs yet")
    assert at.selectbox(key="evaluation_planner").options == ["rules: the rule planner (offline, bilingual)",
                                                               "reference: the dataset's own commands (a check of "
                                                               "the data: should be perfect)"]
    caption = next(c.value for c in at.caption if c.value.startswith("The openai planner needs"))
    assert "CHATEDIT_OPENAI_MODEL" in caption and "The local planner needs CHATEDIT_LOCAL_LLM" in caption
    assert at.selectbox(key="evaluation_split").value == "test"
    at.number_input(key="evaluation_limit").set_value(4)
    at.button(key="evaluation_start").click().run()
    (bar,) = at.get("progress")
    assert "no worker serving the 'batch' lane is alive" in bar.proto.text
    with running_worker(app_env, lanes=["batch"]):
        _until_done(at)
    (run,) = evaluations.list_runs(app_env, team.admin)
    assert [s.value for s in at.success] == [
        f"Run #{run.id} finished: 4 examples; exact match {run.metrics['scalars']['exact_match']:.1%}, command F1 "
        f"{run.metrics['scalars']['f1_micro']:.1%}."]
    assert (run.planner, run.split, run.example_count) == ("rules", "test", 4)
    assert at.selectbox(key=RUN).value == run.id and len(_table(at, "what differs")) == 4


def test_an_editor_has_no_evaluation_page(team: Team) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_app_as(team.token(team.editor), page="evaluation")
    direct = AppTest.from_file(VIEW, default_timeout=60)
    direct.session_state[ACTOR_KEY] = team.editor
    direct.run()
    assert not direct.exception, direct.exception
    assert [e.value for e in direct.error] == ["Ed (editor) may not manage datasets. The Evaluation page is for admins."]
    assert not direct.dataframe and not direct.button


def test_a_queued_run_is_watched_again_and_cancel_stops_it(app_env: Services, team: Team) -> None:
    job_id = evaluations.submit_run(app_env, team.admin, planner="rules", dataset="tiny", split="test")
    at = open_app_as(team.token(team.admin), page="evaluation")  # a new browser session: the page finds the job
    assert not at.exception, at.exception
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("Evaluating rules on tiny@1/test is queued, but no worker")
    assert not any(b.key == "evaluation_start" for b in at.button), "one run at a time"
    at.button(key=f"cancel_{job_id}").click().run()
    assert app_env.queue.get(job_id).status is JobStatus.CANCELLED
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Evaluating rules on tiny@1/test was cancelled."]
    assert evaluations.list_runs(app_env, team.admin) == []
    assert any(b.key == "evaluation_start" for b in at.button)
