"""`chatedit eval planner` on a dataset in the database: a stored evaluation run (the command's own worker runs it),
every metric printed or the stored metrics as JSON, the same numbers the Evaluation page reads; a split the
version lacks or a version that does not exist is one sentence and a failing exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from finetune.dataset_rows import DatasetRow
from finetune.metrics import LANGUAGE_METRICS, METRIC_LABELS, METRIC_NAMES
from jobs.services import Services, datasets, evaluations
from jobs.services.permissions import Actor, local_actor

LABELS = ("Background", "Hair", "Upper-clothes", "Face", "Pants")
#: The last row expects the hair recoloured for a request about the pants: the rule planner misses it for sure.
ROWS = [("make the shirt red", [{"command": "recolor", "paras": [["Upper-clothes"], "red"]}], "en"),
        ("blur the background", [{"command": "blur", "paras": [["Background"], 0.5]}], "en"),
        ("把头发染成蓝色", [{"command": "recolor", "paras": [["Hair"], "blue"]}], "zh"),
        ("make the pants green", [{"command": "recolor", "paras": [["Hair"], "green"]}], "en")]


def _run(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def admin(services: Services) -> Actor:
    """The local admin (whom the command acts for), with ``tiny@1``: four test rows, split with a seed."""
    actor = local_actor(services)
    rows = [DatasetRow(request=r, language=lang, labels=LABELS, commands=tuple(c), source="template",
                       checks={"contract": True}, split="test") for r, c, lang in ROWS]
    datasets.create_version(services, actor, "tiny", rows, note="by hand", split_seed=0)
    return actor


def test_json_prints_the_stored_metrics_of_a_new_run(services: Services, worker_env: dict[str, str],
                                                     admin: Actor) -> None:
    result = _run(worker_env, "eval", "planner", "--planner", "rules", "--dataset", "tiny", "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    (run,) = evaluations.list_runs(services, admin)
    assert printed["run_id"] == run.id and printed["metrics"] == run.metrics
    assert (run.planner, run.dataset, run.split, run.example_count, run.status) == \
        ("rules", "tiny@1", "test", 4, "succeeded")
    scalars = printed["metrics"]["scalars"]
    assert set(scalars) == set(METRIC_NAMES) and scalars["examples"] == 4
    assert scalars["parse_rate"] == 1.0 and scalars["exact_match"] <= 0.75  # the pants row is a miss
    assert printed["metrics"]["errors"]["wrong_target"] >= 1
    assert set(printed["metrics"]["per_language"]) == {"en", "zh"}
    assert f"Stored as evaluation run {run.id}; the Evaluation page shows it." in result.stderr


def test_text_lists_every_metric_and_each_language(services: Services, worker_env: dict[str, str],
                                                   admin: Actor) -> None:
    result = _run(worker_env, "eval", "planner", "--planner", "reference", "--dataset", "tiny@1", "--split", "all")
    assert result.exit_code == 0, result.output
    (run,) = evaluations.list_runs(services, admin)
    assert run.split is None and run.example_count == 4
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Run #{run.id}: reference on tiny@1, 4 examples")
    for name in METRIC_NAMES:
        assert any(line.strip().startswith(METRIC_LABELS[name]) for line in lines), name
    exact = next(line for line in lines if line.strip().startswith(METRIC_LABELS["exact_match"]))
    assert exact.split()[-1] == "100.0%"  # the dataset's own commands
    en = next(line for line in lines if line.startswith("  en ("))
    assert en.startswith("  en (3 examples): ") and en.count("%") >= len(LANGUAGE_METRICS) - 3
    assert next(line for line in lines if line.startswith("  zh (")).startswith("  zh (1 example): ")
    assert lines[-2] == "Examples with each error: none."
    assert result.stdout.rstrip().endswith(f"Stored as evaluation run {run.id}; the Evaluation page shows it.")


def test_a_missing_split_or_version_is_a_sentence(services: Services, worker_env: dict[str, str],
                                                  admin: Actor) -> None:
    missing = _run(worker_env, "eval", "planner", "--planner", "rules", "--dataset", "tiny", "--split", "val")
    assert missing.exit_code == 1
    assert "tiny@1 has no val split: split it first" in missing.stderr
    assert evaluations.list_runs(services, admin) == []

    no_version = _run(worker_env, "eval", "planner", "--dataset", "tiny@9")
    assert no_version.exit_code == 1
    assert "There is no version 9 of dataset 'tiny'" in no_version.stderr

    unknown = _run(worker_env, "eval", "planner", "--dataset", "nothing")
    assert unknown.exit_code == 2
    assert "'nothing' is neither a dataset in the database" in unknown.stderr

    grammar = _run(worker_env, "eval", "planner", "--planner", "rules", "--dataset", "tiny", "--constrained")
    assert grammar.exit_code == 1
    assert "Only the local planner decodes under a grammar or not" in grammar.stderr
    assert evaluations.list_runs(services, admin) == []


def test_a_file_is_scored_whole(worker_env: dict[str, str], tmp_path: Path) -> None:
    """A file keeps the older report; choosing a split of it is a usage error (rows of a file have no split)."""
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps([{"instruction": "make the shirt red", "input": "",
                                 "output": json.dumps(ROWS[0][1]),
                                 "history": [["我更改了图片，新的图片有哪些部分？", ", ".join(LABELS)]]}]),
                    encoding="utf-8")
    whole = _run(worker_env, "eval", "planner", "--dataset", str(path), "--json")
    assert whole.exit_code == 0, whole.output
    assert json.loads(whole.stdout)["samples"] == 1
    split = _run(worker_env, "eval", "planner", "--dataset", str(path), "--split", "test")
    assert split.exit_code == 2 and "--split and --constrained/--free apply to datasets in the database" in split.stderr
