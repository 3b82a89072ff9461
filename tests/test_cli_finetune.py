"""`chatedit finetune`: trains through the real job (the command's own workers), prints the checkpoints with their
evaluations, resumes a run, and refuses what cannot be done with one sentence and a failing exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from jobs.services import Services, training
from jobs.services.permissions import local_actor
from tests.finetune_support import make_memo_dataset, save_tiny_base

MEMO_FLAGS = ("--steps", "12", "--checkpoint-every", "6", "--learning-rate", "0.02", "--batch-size", "2")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_base(tmp_path_factory.mktemp("tiny-base"))


def _run(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_a_run_trains_is_evaluated_and_printed_then_goes_on_with_resume(services: Services,
                                                                        worker_env: dict[str, str],
                                                                        tiny_base: Path) -> None:
    admin = local_actor(services)
    make_memo_dataset(services, admin)
    result = _run(worker_env, "finetune", "--base", str(tiny_base), "--dataset", "memo", *MEMO_FLAGS)
    assert result.exit_code == 0, result.output
    (run,) = training.list_training_runs(services, admin)
    assert (run.status, run.step, run.config.learning_rate, run.config.batch_size) == ("succeeded", 12, 0.02, 2)
    assert f"Training run {run.id}: {run.label}, 12 steps." in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["step", "loss"] and len(lines) == 3
    assert lines[2].split()[0] == "12" and lines[2].split()[2:5] == ["100.0%", "100.0%", "100.0%"], lines[2]
    assert "Evaluating 4 checkpoint run(s) on the val split" in result.stderr

    again = _run(worker_env, "finetune", "--resume", str(run.id), "--steps", "14")
    assert again.exit_code == 0, again.output
    done = training.get_training_run(services, admin, run.id)
    assert (done.step, done.details["resumed_from"]) == (14, 12)
    assert [c.step for c in training.checkpoints(services, admin, run.id)] == [6, 12, 14]


def test_what_cannot_be_done_is_one_sentence(services: Services, worker_env: dict[str, str], tiny_base: Path) -> None:
    admin = local_actor(services)
    make_memo_dataset(services, admin)
    missing = _run(worker_env, "finetune", "--base", str(tiny_base))
    assert missing.exit_code == 2 and "Name the dataset to train on" in missing.output
    unknown = _run(worker_env, "finetune", "--base", str(tiny_base), "--dataset", "nope")
    assert unknown.exit_code == 1 and "There is no dataset 'nope'." in unknown.output
    bad = _run(worker_env, "finetune", "--base", str(tiny_base), "--dataset", "memo", "--learning-rate", "5")
    assert bad.exit_code == 1 and "These training settings cannot be used: learning_rate" in bad.output
    nothing = _run(worker_env, "finetune", "--resume", "99")
    assert nothing.exit_code == 1 and "There is no training run 99." in nothing.output
    mixed = _run(worker_env, "finetune", "--resume", "1", "--dataset", "memo")
    assert mixed.exit_code == 2 and "give only --steps with it" in mixed.output
    assert training.list_training_runs(services, admin) == []
    assert services.queue.list() == []


def test_a_person_who_may_not_train_is_refused_before_anything_is_queued(services: Services,
                                                                         worker_env: dict[str, str],
                                                                         tiny_base: Path) -> None:
    from tests.team_support import make_team

    team = make_team(services)
    make_memo_dataset(services, team.admin)
    refused = _run(worker_env, "--as", team.editor.name, "finetune", "--base", str(tiny_base), "--dataset", "memo")
    assert refused.exit_code == 2 and "may not run fine-tuning" in refused.output
    assert services.queue.list() == []
