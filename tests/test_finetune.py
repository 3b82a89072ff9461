"""LoRA fine-tuning through the real ``finetune`` job: a tiny model learns, is evaluated, becomes the planner.

A tiny random-weight model (tests/finetune_support.py) memorises two answers in 12 steps on the CPU;
its checkpoints are stored as blobs, evaluated on the val split by real ``eval_run`` jobs, registered
and then answer ``plan`` jobs. Cancel, resume and a SIGKILLed worker all go on from the last checkpoint
with one loss-curve point per step. The prompt TRL trains on is the planner's prompt, token for token.
The real SmolLM2-135M-Instruct trains two steps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.planners import ChatTurn
from finetune.dataset_rows import DatasetRow
from jobs.planning import plan_request
from jobs.queue import JobStatus
from jobs.services import Services, training
from jobs.services.permissions import PermissionDenied
from tests.conftest import running_worker
from tests.finetune_support import MEMO, MEMO_CONFIG, finish_training, make_memo_dataset, save_tiny_base
from tests.team_support import Team, make_team
from tests.tiny_llm import LABELS


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def test_a_tiny_model_learns_is_evaluated_registered_and_then_plans(services: Services, team: Team,
                                                                     tiny_base: Path) -> None:
    spec = make_memo_dataset(services, team.admin)
    run = training.start_training(services, team.admin, base_model=str(tiny_base), dataset=spec, config=MEMO_CONFIG)
    assert (run.status, run.step, run.total_steps, run.dataset) == ("queued", 0, 12, "memo@1")
    assert services.queue.get(run.job_id).lane == "gpu"

    job = finish_training(services, run.id)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    run = training.get_training_run(services, team.admin, run.id)
    assert (run.status, run.step) == ("succeeded", 12)
    assert run.details["device"] == "cpu" and run.details["precision"] == "fp32" and run.details["seed"] == 42

    curve = training.training_steps(services, team.admin, run.id)
    assert [s.step for s in curve] == list(range(1, 13)), "one point per step"
    assert curve[-1].loss < curve[0].loss / 20, f"the loss fell: {[round(s.loss, 3) for s in curve]}"

    kept = training.checkpoints(services, team.admin, run.id)
    assert [c.step for c in kept] == [6, 12] and all(c.resumable for c in kept)
    last = kept[-1]
    for decoding in ("constrained", "free"):
        evaluation = last.evaluations[decoding]
        assert evaluation is not None and evaluation.status == "succeeded", decoding
        assert evaluation.split == "val" and evaluation.constrained is (decoding == "constrained")
        assert evaluation.planner_detail["checkpoint"] == last.id and evaluation.planner_detail["step"] == 12
        assert evaluation.metrics["scalars"]["validity"] == 1.0, decoding
        # On PostgreSQL too, whose JSONB hands the expected commands back as {"paras": …, "command": …}.
        assert evaluation.metrics["scalars"]["exact_match"] == 1.0, decoding
        assert evaluation.label.endswith(f"local run {run.id} step 12 ({'constrained' if decoding == 'constrained' else 'free'}) on memo@1/val")

    model = training.register_planner(services, team.admin, last.id, "memo-step12", make_default=True)
    assert (model.base_model, model.run_id, model.step, model.is_default) == (str(tiny_base), run.id, 12, True)
    assert training.checkpoints(services, team.admin, run.id)[-1].planner_name == "memo-step12"
    with pytest.raises(training.TrainingError, match="already"):
        training.register_planner(services, team.admin, last.id, "memo-step12")

    # Someone who chose no planner now gets the team's default fine-tuned planner; it answers from what it learned.
    choice = training.planner_choice(services, {})
    assert choice.planner == "local" and choice.model is not None and choice.model.name == "memo-step12"
    with running_worker(services, lanes=["interactive"]):
        for request, commands in MEMO:
            result = plan_request(services, request, labels=LABELS, planner="local", fine_tuned=choice.model.id,
                                  user_id=team.admin.id)
            assert [c.to_wire() for c in result.commands] == commands, request
    # A person's own choice of planner still wins over the team's default.
    assert training.planner_choice(services, {"planner": "rules"}).planner == "rules"
    training.set_default_planner(services, team.admin, None)
    assert training.planner_choice(services, {}).planner == services.settings.planner


def test_only_people_who_may_train_can_start_register_or_queue_training(services: Services, team: Team,
                                                                        tiny_base: Path) -> None:
    spec = make_memo_dataset(services, team.admin)
    with pytest.raises(PermissionDenied):
        training.start_training(services, team.editor, base_model=str(tiny_base), dataset=spec)
    with pytest.raises(PermissionDenied):
        services.queue.enqueue("finetune", {"run": 1}, lane="gpu", owner_id=team.editor.id)
    with pytest.raises(PermissionDenied):
        training.list_training_runs(services, team.reviewer)
    assert training.list_training_runs(services, team.admin) == []


def test_bad_requests_are_refused_with_sentences_and_nothing_is_queued(services: Services, team: Team,
                                                                       tiny_base: Path) -> None:
    from jobs.services import datasets

    make_memo_dataset(services, team.admin)
    datasets.create_version(services, team.admin, "unsplit", [DatasetRow(
        request="blur it", language="en", labels=("Background",),
        commands=({"command": "blur", "paras": [["Background"], 0.5]},), source="template", checks={"contract": True})],
        note="no split")
    with pytest.raises(training.TrainingError, match="has no train split"):
        training.start_training(services, team.admin, base_model=str(tiny_base), dataset="unsplit")
    with pytest.raises(training.InvalidTrainingConfig, match="learning_rate"):
        training.start_training(services, team.admin, base_model=str(tiny_base), dataset="memo",
                                config={"learning_rate": -1})
    with pytest.raises(training.TrainingError, match="Name the base model"):
        training.start_training(services, team.admin, base_model="  ", dataset="memo")
    assert services.queue.list() == [] and training.list_training_runs(services, team.admin) == []


def test_cancel_keeps_a_checkpoint_and_resume_continues_the_steps_and_the_curve(services: Services, team: Team,
                                                                               tiny_base: Path) -> None:
    spec = make_memo_dataset(services, team.admin)
    config = {**MEMO_CONFIG, "steps": 400, "checkpoint_every": 1000, "learning_rate": 1e-3}
    run = training.start_training(services, team.admin, base_model=str(tiny_base), dataset=spec, config=config)
    with running_worker(services, lanes=["gpu"]):
        _wait_for(lambda: training.get_training_run(services, team.admin, run.id).step >= 3, 300, "three steps")
        assert training.cancel_training(services, team.admin, run.id)
        job = services.queue.wait(run.job_id, timeout_s=120)
    assert job.status is JobStatus.CANCELLED
    stopped = training.get_training_run(services, team.admin, run.id)
    assert stopped.status == "cancelled" and 3 <= stopped.step < 400
    kept = training.checkpoints(services, team.admin, run.id)
    assert [c.step for c in kept] == [stopped.step], "the stop made a checkpoint at its step, and no evaluation"
    assert kept[0].evaluations == {}
    assert [s.step for s in training.training_steps(services, team.admin, run.id)] == list(range(1, stopped.step + 1))
    with pytest.raises(training.TrainingError, match="give more steps"):
        training.resume_training(services, team.admin, run.id, steps=stopped.step)

    resumed = training.resume_training(services, team.admin, run.id, steps=stopped.step + 3)
    assert resumed.status == "queued" and resumed.job_id != run.job_id
    with pytest.raises(training.TrainingError, match="queued"):
        training.resume_training(services, team.admin, run.id)
    with running_worker(services, lanes=["gpu"]):
        job = services.queue.wait(resumed.job_id, timeout_s=300)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    done = training.get_training_run(services, team.admin, run.id)
    assert (done.status, done.step, done.details["resumed_from"]) == ("succeeded", stopped.step + 3, stopped.step)
    assert [s.step for s in training.training_steps(services, team.admin, run.id)] == list(range(1, done.step + 1))
    assert [c.step for c in training.checkpoints(services, team.admin, run.id)] == [stopped.step, done.step]


@pytest.mark.slow
def test_a_worker_killed_mid_training_leaves_a_job_the_next_worker_resumes(services: Services, team: Team,
                                                                          tiny_base: Path,
                                                                          worker_env: dict[str, str]) -> None:
    spec = make_memo_dataset(services, team.admin)
    config = {**MEMO_CONFIG, "steps": 60, "checkpoint_every": 5, "learning_rate": 1e-3}
    run = training.start_training(services, team.admin, base_model=str(tiny_base), dataset=spec, config=config)
    command = [sys.executable, "-m", "app.cli", "worker", "--lanes", "gpu"]
    doomed = subprocess.Popen([*command, "--name", "doomed"], env=worker_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: bool(training.checkpoints(services, team.admin, run.id)), 300, "a first checkpoint")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    kept = [c.step for c in training.checkpoints(services, team.admin, run.id)]
    assert training.get_training_run(services, team.admin, run.id).step < 60, "killed mid-run"
    survivor = subprocess.Popen([*command, "--name", "survivor"], env=worker_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
    try:
        job = services.queue.wait(run.job_id, timeout_s=300)
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=60)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert job.attempts == 2
    done = training.get_training_run(services, team.admin, run.id)
    assert done.status == "succeeded" and done.step == 60
    assert done.details["resumed_from"] >= kept[-1] >= 5, "it went on from the last checkpoint, not from step 0"
    assert [s.step for s in training.training_steps(services, team.admin, run.id)] == list(range(1, 61))


def test_training_prompts_are_the_planners_prompts_token_for_token(tiny_base: Path, tmp_path: Path) -> None:
    from core.planners.local_planner import LocalPlanner
    from finetune.training import build_trainer
    from finetune.training_config import TrainingConfig

    rows = [DatasetRow(request="把头发染成红色", language="zh", labels=tuple(LABELS),
                       commands=({"command": "recolor", "paras": [["Hair"], "red"]},), split="train"),
            DatasetRow(request="and the pants navy", language="en", labels=tuple(LABELS),
                       commands=({"command": "recolor", "paras": [["Pants"], "navy"]},),
                       conversation=(("make the shirt white", '[{"command":"recolor","paras":[["Upper-clothes"],"white"]}]'),),
                       split="train")]
    trainer = build_trainer(TrainingConfig(steps=1), rows, base_model=str(tiny_base), output_dir=tmp_path)
    planner = LocalPlanner.load(str(tiny_base))
    for row, example in zip(rows, trainer.train_dataset, strict=True):
        turns = [ChatTurn(role, text) for user, assistant in row.conversation
                 for role, text in (("user", user), ("assistant", assistant))]
        prompt = planner.prompt(row.request, row.labels, turns)
        ids = list(example["input_ids"])
        # TRL folds the completion mask into the labels: -100 where no loss is taken (the prompt).
        trained_on = [i for i, label in zip(ids, example["labels"], strict=True) if label != -100]
        prompt_ids = ids[: len(ids) - len(trained_on)]
        assert prompt_ids == planner.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert planner.tokenizer.decode(prompt_ids) == prompt
        completion = planner.tokenizer.decode(trained_on)
        assert completion.startswith('[{"command":"recolor"') and "<|im_end|>" in completion, completion


def test_the_real_smollm2_trains_two_steps_and_its_adapter_plans(tmp_path: Path) -> None:
    from core.planners.local_planner import LocalPlanner
    from finetune.cleaning import dedupe, split_rows
    from finetune.dataset_formats import read_rows
    from finetune.training import ADAPTER_FILES, train
    from finetune.training_config import TrainingConfig
    from tests import real_assets

    model = real_assets.smollm2_gguf()
    seed = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"
    rows, _ = dedupe(read_rows(seed, "seed").rows[:40])
    train_rows = [r for r in split_rows(rows, seed=0) if r.split == "train"][:4]
    losses: list[float] = []
    saved: list[int] = []
    outcome = train(TrainingConfig(steps=2, checkpoint_every=2, learning_rate=2e-4), train_rows,
                    base_model=str(model), output_dir=tmp_path / "out",
                    on_step=lambda log: losses.append(log.loss), on_checkpoint=lambda step, path, loss: saved.append(step))
    assert outcome.step == 2 and saved == [2] and len(losses) == 2
    assert all(0 < loss < 10 for loss in losses), losses
    adapter = tmp_path / "out" / "checkpoint-2"
    assert all((adapter / name).is_file() for name in ADAPTER_FILES)
    planner = LocalPlanner.load(str(model), str(adapter), max_new_tokens=96)
    result = planner.plan("把背景换成海边", labels=["Background", "Face", "Hair"])
    assert result.rejections == [], "constrained decoding keeps a tuned SmolLM2 within the contract"


def test_a_run_whose_job_ended_unrecorded_reads_as_failed_and_is_not_waited_for(services: Services, team: Team,
                                                                                 tiny_base: Path) -> None:
    """The queue fails a job whose workers were killed once too often: no handler records it, the run must not
    look as if it were still training (pages would poll forever and Resume would be refused)."""
    import sqlalchemy as sa

    from db.models import Job, TrainingRun

    spec = make_memo_dataset(services, team.admin)
    run = training.start_training(services, team.admin, base_model=str(tiny_base), dataset=spec, config=MEMO_CONFIG)
    with services.database.write_session() as session:
        session.execute(sa.update(TrainingRun.__table__).where(TrainingRun.__table__.c.id == run.id)
                        .values(status="running", step=4))
        session.execute(sa.update(Job.__table__).where(Job.__table__.c.id == run.job_id)
                        .values(status="failed", error_message="The worker stopped answering 3 times."))
    seen = training.get_training_run(services, team.admin, run.id)
    assert (seen.status, seen.active, seen.error) == ("failed", False, "The worker stopped answering 3 times.")
    assert [r.status for r in training.list_training_runs(services, team.admin)] == ["failed"]
    assert not training.cancel_training(services, team.admin, run.id)
    with pytest.raises(training.TrainingError, match="stored no checkpoint"):
        training.resume_training(services, team.admin, run.id)


def test_a_request_for_a_planner_no_longer_registered_fails_with_a_sentence(services: Services, team: Team) -> None:
    from jobs.planning import PlanningFailed

    with running_worker(services, lanes=["interactive"]), pytest.raises(PlanningFailed) as refused:
        plan_request(services, "remove the hat", labels=LABELS, planner="local", fine_tuned=999,
                     user_id=team.admin.id)
    assert str(refused.value) == ("The fine-tuned planner 999 is no longer registered; choose another in Settings.")
    with pytest.raises(training.TrainingError, match="There is no registered planner 999."):
        training.unregister_planner(services, team.admin, 999)
    with pytest.raises(PermissionDenied):
        training.unregister_planner(services, team.editor, 999)
