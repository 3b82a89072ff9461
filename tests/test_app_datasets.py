"""The Datasets page as an admin uses it: versions with their counts, rows browsed with filters and search, a row
edited or deleted (each a new version), charts, the download, and import / generation / merge through the page
with a real worker. Anyone else is refused."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app.ui.datasets import ASIDE_FILTER, FILTERS, PICK_ROW, SEARCH, download_data
from app.ui.identity import ACTOR_KEY
from core.settings import Settings
from finetune.dataset_checks import check_row
from finetune.dataset_rows import DatasetRow
from finetune.evaluation import load_dataset
from jobs.services import Services, datasets
from tests.conftest import running_worker, services_with
from tests.openai_fake_server import FakeOpenAIServer, Reply
from tests.team_support import Team, make_team, open_app_as

SEED = Path("/work/shared/data/seed_chat_dataset.json")
VIEW = str(Path(__file__).parents[1] / "app" / "views" / "datasets.py")
#: Seed rows the hand-made version holds (the page's tests are about the page, not about volume).
SAMPLES = 120
ENGLISH = DatasetRow(request="make the hair blue", language="en", labels=("Background", "Hair", "Face"),
                     commands=({"command": "recolor", "paras": [["Hair"], "blue"]},), source="template",
                     origin="by hand")
TAIL = DatasetRow(request="make the tail green", language="en", labels=("Background", "Tail"),
                  commands=({"command": "recolor", "paras": [["Tail"], "green"]},), source="template",
                  origin="by hand")


@pytest.fixture
def team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    return make_team(app_env)


def _seed_rows(limit: int = SAMPLES) -> list[DatasetRow]:
    """The first rows of the thesis' seed file, made into rows by hand and checked."""
    return [check_row(DatasetRow(request=s.request, language="zh", labels=s.labels,
                                 commands=tuple(s.reference_items or ()), source="import",
                                 origin=f"seed_chat_dataset.json#{s.index}"))
            for s in load_dataset(SEED, limit=limit)]


@pytest.fixture
def starter(app_env: Services, team: Team) -> list[DatasetRow]:
    """``starter@1``: seed rows, one English row and one row whose label no segmenter produces (set aside)."""
    rows = [*_seed_rows(), check_row(ENGLISH), check_row(TAIL)]
    version = datasets.create_version(app_env, team.admin, "starter", rows, note="by hand for the page test")
    assert version.aside_count >= 1 and not rows[-1].passed
    return rows


def _caption(at: AppTest, start: str) -> str:
    return next(c.value for c in at.caption if c.value.startswith(start))


def _shown(at: AppTest) -> int:
    """How many rows the rows table shows, from the caption above it ("N of M rows of …")."""
    return int(next(c.value for c in at.caption if " rows of starter@" in c.value).split(" of ")[0].replace(",", ""))


#: Each table of the page by a column only it has.
TABLES = {"versions": "version", "rows": "request", "left out": "reason"}


def _table(at: AppTest, which: str):  # type: ignore[no-untyped-def]
    """A table of the page as a pandas frame."""
    return next(d.value for d in at.dataframe if TABLES[which] in d.value.columns)


def _bars(chart) -> list[dict]:  # type: ignore[no-untyped-def]
    """The data rows a chart draws."""
    return [row for data in chart.proto.datasets for row in pa.ipc.open_stream(data.data.data).read_all().to_pylist()]


def test_an_admin_sees_versions_rows_charts_and_a_download(app_env: Services, team: Team,
                                                            starter: list[DatasetRow]) -> None:
    at = open_app_as(team.token(team.admin), page="datasets")
    assert not at.exception, at.exception
    assert at.title[0].value == "Datasets"
    versions = _table(at, "versions").to_dict("records")
    assert [(v["version"], v["rows"], v["set aside"], v["by"]) for v in versions] == \
        [("starter@1", len(starter), sum(not r.passed for r in starter), "Ada")]
    assert versions[0]["note"] == "by hand for the page test"
    rows = _table(at, "rows")
    assert len(rows) == len(starter) == _shown(at)
    english = rows[rows["request"] == "make the hair blue"].iloc[0]
    assert (english["language"], english["labels"], english["commands"], english["checks"]) == \
        ("en", "Background, Hair, Face", "Recolor the Hair to blue", "passed")
    tail = rows[rows["request"] == "make the tail green"].iloc[0]
    assert bool(tail["set aside"]) and "Tail" in tail["checks"]
    charts = [_bars(chart) for chart in at.get("vega_lite_chart")]
    assert len(charts) == 5  # commands, languages, sources, labels, request lengths
    languages = {(b["language"], b["use"]): b["rows"] for b in charts[1]}
    assert languages == {("zh", "used"): sum(r.language == "zh" and r.passed for r in starter),
                         ("zh", "set aside"): sum(r.language == "zh" and not r.passed for r in starter),
                         ("en", "used"): 1, ("en", "set aside"): 1}
    commands = {(b["command"], b["use"]): b["rows"] for b in charts[0]}
    assert commands[("recolor", "set aside")] == 1 and commands[("change", "used")] > 0
    (download,) = [b for b in at.get("download_button") if b.label.startswith("Download starter@1")]
    assert download.label == "Download starter@1 (alpaca, zip)"
    at.selectbox(key="datasets_export_format").set_value("sharegpt").run()
    assert any(b.label == "Download starter@1 (sharegpt, zip)" for b in at.get("download_button"))
    # What the button hands over when clicked: the usable rows for LLaMA-Factory, with its dataset_info.json.
    version = datasets.get_version(app_env, team.admin, "starter", 1)
    with zipfile.ZipFile(io.BytesIO(download_data(app_env, team.admin, version, "sharegpt")())) as archive:
        info = json.loads(archive.read("dataset_info.json"))
        records = [r for entry in info.values() for r in json.loads(archive.read(entry["file_name"]))]
    assert len(records) == version.row_count - version.aside_count
    assert all(entry["formatting"] == "sharegpt" for entry in info.values())


def test_filters_and_search_narrow_the_rows(team: Team, starter: list[DatasetRow]) -> None:
    at = open_app_as(team.token(team.admin), page="datasets")
    at.multiselect(key="datasets_f_language").set_value(["en"]).run()
    assert set(_table(at, "rows")["request"]) == {"make the hair blue", "make the tail green"}
    at.radio(key=ASIDE_FILTER).set_value("set aside").run()
    assert list(_table(at, "rows")["request"]) == ["make the tail green"]
    assert at.button(key="datasets_keep_aside").label.startswith("Keep the 1 set-aside rows shown")
    at.radio(key=ASIDE_FILTER).set_value("all rows")
    at.multiselect(key="datasets_f_language").set_value([])
    at.multiselect(key="datasets_f_failed").set_value(["labels"]).run()
    assert "make the tail green" in set(_table(at, "rows")["request"])
    at.multiselect(key="datasets_f_failed").set_value([])
    recolors = sum("recolor" in r.command_types for r in starter)
    at.multiselect(key="datasets_f_command").set_value(["recolor"]).run()
    assert _shown(at) == recolors and 0 < recolors < len(starter)
    at.multiselect(key="datasets_f_command").set_value([])
    at.text_input(key=SEARCH).input("blue hair").run()
    assert _shown(at) == 0  # the search is a phrase, not words
    at.text_input(key=SEARCH).input("HAIR BLUE").run()
    assert list(_table(at, "rows")["request"]) == ["make the hair blue"]
    at.text_input(key=SEARCH).input("夕阳").run()
    assert _shown(at) == sum("夕阳" in r.request for r in starter) > 0
    at.text_input(key=SEARCH).input("")
    at.radio(key=ASIDE_FILTER).set_value("set aside").run()
    at.button(key="datasets_keep_aside").click().run()
    aside = sum(not r.passed for r in starter)
    assert [s.value for s in at.success] == [f"Version 2 made: Kept {aside} rows set aside in version 1."]
    assert _shown(at) == 0 and not any(b.key == "datasets_keep_aside" for b in at.button)
    versions = {v["version"]: v["set aside"] for v in _table(at, "versions").to_dict("records")}
    assert versions == {"starter@1": aside, "starter@2": 0}
    assert set(FILTERS) == {"datasets_f_source", "datasets_f_command", "datasets_f_language", "datasets_f_label",
                            "datasets_f_split", "datasets_f_failed"}
    assert not at.exception, at.exception


def test_editing_or_deleting_a_row_makes_the_next_version(app_env: Services, team: Team,
                                                           starter: list[DatasetRow]) -> None:
    at = open_app_as(team.token(team.admin), page="datasets")
    number = len(starter) - 1  # the English row
    at.number_input(key=PICK_ROW).set_value(number).run()
    prefix = f"datasets_edit_{datasets.get_version(app_env, team.admin, 'starter', 1).id}_{number}"
    assert at.text_area(key=f"{prefix}_request").value == "make the hair blue"
    at.text_area(key=f"{prefix}_request").input("make the hair dark blue")
    at.text_area(key=f"{prefix}_commands").input(json.dumps([{"command": "recolor", "paras": [["Hair"], "navy"]}]))
    at.button(key="datasets_edit_save").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [f"Version 2 made: row {number} of version 1 edited."]
    edited = datasets.version_rows(app_env, team.admin, "starter", 2)[number - 1]
    assert (edited.row.request, edited.row.commands[0]["paras"][1], edited.row.passed) == \
        ("make the hair dark blue", "navy", True)
    assert datasets.version_rows(app_env, team.admin, "starter", 1)[number - 1].row.request == "make the hair blue"
    assert at.selectbox(key="datasets_version").value == 2  # the page shows the version it made

    at.text_area(key=f"datasets_edit_{datasets.get_version(app_env, team.admin, 'starter', 2).id}_{number}_commands")\
        .input("[{not json")
    at.button(key="datasets_edit_save").click().run()
    assert at.error[0].value.startswith("The commands are not JSON") and at.error[0].value.endswith("nothing was saved.")
    assert datasets.get_version(app_env, team.admin, "starter").number == 2

    at.number_input(key=PICK_ROW).set_value(1).run()
    at.button(key="datasets_edit_delete").click().run()
    assert [s.value for s in at.success] == ["Version 3 made: row 1 of version 2 deleted."]
    third = datasets.version_rows(app_env, team.admin, "starter", 3)
    assert len(third) == len(starter) - 1 and third[0].row.request == starter[1].request


def test_an_editor_has_no_datasets_page(team: Team, starter: list[DatasetRow]) -> None:
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_app_as(team.token(team.editor), page="datasets")
    direct = AppTest.from_file(VIEW, default_timeout=60)
    direct.session_state[ACTOR_KEY] = team.editor
    direct.run()
    assert not direct.exception, direct.exception
    assert [e.value for e in direct.error] == ["Ed (editor) may not manage datasets. The Datasets page is for admins."]
    assert not direct.dataframe and not direct.button


def _until_done(at: AppTest, *, timeout_s: float = 60.0) -> AppTest:
    """Run the page (a button clicked: its run first) until the job it watches has ended and the page says so."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if at.success or at.error:
            return at
        time.sleep(0.2)
    raise AssertionError("the page never said the job ended")


def test_import_generate_and_merge_through_the_page(app_env: Services, team: Team, tmp_path: Path) -> None:
    records = json.loads(SEED.read_text(encoding="utf-8"))[:150]
    records.append({**records[0], "output": "not a command array"})
    at = open_app_as(team.token(team.admin), page="datasets")
    assert at.info[0].value.startswith("No datasets yet")
    at.file_uploader(key="datasets_import_file").set_value(
        ("seed_sample.json", json.dumps(records, ensure_ascii=False).encode(), "application/json"))
    at.selectbox(key="datasets_import_format").set_value("seed")
    at.button(key="datasets_import_go").click()
    with running_worker(app_env, lanes=["batch"]):
        _until_done(at)
        (done,) = [s.value for s in at.success]
        kept = datasets.get_version(app_env, team.admin, "seed_sample")
        assert done.startswith(f"Version 1 made: imported {kept.row_count} rows into seed_sample@1; ")
        left_out = _table(at, "left out").to_dict("records")
        assert {"row in the file": 151, "reason": left_out[-1]["reason"]} in left_out
        assert len(left_out) == len(records) - kept.row_count

        at.number_input(key="datasets_generate_templates").set_value(200)
        at.button(key="datasets_generate_go").click()
        _until_done(at)
        assert [s.value for s in at.success] == ["Version 1 made: generated 200 rows into generated@1."]
        assert "CHATEDIT_OPENAI_MODEL" in _caption(at, "LLM rows need a model")
        assert {r.language for r in datasets.usable_rows(app_env, team.admin, "generated")} == {"en", "zh"}

    at.multiselect(key="datasets_merge_sources").set_value(["seed_sample@1", "generated@1"])
    at.text_input(key="datasets_merge_name").input("mixed")
    at.button(key="datasets_merge_go").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("Version 1 made: mixed@1, ")
    mixed = datasets.get_version(app_env, team.admin, "mixed")
    assert sum(mixed.split_counts.values()) == mixed.row_count > 200
    versions = {v["version"]: v for v in _table(at, "versions").to_dict("records")}
    counts = mixed.split_counts
    assert versions["mixed@1"]["train / val / test"] == f"{counts['train']:,} / {counts['val']:,} / {counts['test']:,}"
    assert counts["train"] > counts["test"] > 0
    # An import draws splits too (seed 0), so a fresh import can be evaluated on its test split at once.
    assert versions["seed_sample@1"]["train / val / test"] != "not split"


def test_a_job_queued_earlier_is_watched_again_and_cancel_stops_it(app_env: Services, team: Team) -> None:
    job_id = datasets.submit_generate(app_env, team.admin, "later", templates=100)
    at = open_app_as(team.token(team.admin), page="datasets")  # a new browser session: the page finds the job
    assert not at.exception, at.exception
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("Generating rows is queued, but no worker serving the 'batch' lane is alive")
    assert not any(b.key == "datasets_generate_go" for b in at.button), "one job at a time"
    at.button(key=f"cancel_{job_id}").click().run()  # (AppTest runs the whole page: no fragment-only rerun)
    assert app_env.queue.get(job_id).status.value == "cancelled"
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Generating rows was cancelled; nothing was kept."]
    assert datasets.list_datasets(app_env, team.admin) == []
    assert any(b.key == "datasets_generate_go" for b in at.button)


def test_llm_rows_through_the_page_count_tokens_and_keep_bad_rows_aside(
        app_env: Services, settings: Settings, team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer() as server:
        # The model answers every program with the same request: it means other commands, so each row fails its
        # round trip and is kept aside with the reason.
        server.default = Reply(content=json.dumps({"request": "make the whole photo brighter"}))
        llm = {"openai_base_url": server.base_url, "openai_model": "fake-model", "openai_api_key": "sk-test",
               "openai_max_retries": 0}
        for key, value in llm.items():
            monkeypatch.setenv(f"CHATEDIT_{key.upper()}", str(value))
        at = open_app_as(team.token(team.admin), page="datasets")
        assert not at.number_input(key="datasets_generate_llm").disabled
        at.number_input(key="datasets_generate_templates").set_value(0)
        at.number_input(key="datasets_generate_llm").set_value(3)
        at.text_input(key="datasets_generate_name").input("written")
        at.button(key="datasets_generate_go").click()
        with services_with(settings, **llm) as worker_services, running_worker(worker_services, lanes=["batch"]):
            _until_done(at)
    assert [e.value for e in at.error] == []
    (done,) = [s.value for s in at.success]
    assert done.startswith("Version 1 made: generated 3 rows into written@1; 3 set aside by a failed check.")
    assert "The model used 30 prompt and " in done and " completion tokens in 3 requests." in done
    stored = datasets.version_rows(app_env, team.admin, "written")
    assert [(s.aside, s.row.source) for s in stored] == [(True, "llm")] * 3
    assert all(s.row.failed_checks for s in stored)
    assert len(server.requests) == 3
