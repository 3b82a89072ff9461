"""Headless ``chatedit plan``, ``chatedit edit`` and ``chatedit eval planner``: the command engine without the app.

Their output is a contract our own checks rely on: ``plan`` prints the validated command
array as JSON on stdout and everything meant for a person on stderr; ``edit`` writes the
output PNG (recipe embedded) and prints the job id and where the time went.

Each acts for the person ``chatedit --as NAME`` names (default the local admin): they own
the uploaded image, the history and the jobs, and one without ``jobs.submit`` is refused
before anything is stored or queued.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from app.cli_common import Refused, acting_actor, acting_named, open_services
from core.planners import IN_WORKER, PLANNERS
from core.rules import load_rules
from jobs.queue import JobStatus
from jobs.services.permissions import Actor

PLANNER_CHOICES = PLANNERS


def register(cli: click.Group) -> None:
    """Add ``plan``, ``edit`` and the ``eval`` group to the ``chatedit`` command."""
    cli.add_command(plan)
    cli.add_command(edit)
    cli.add_command(eval_group)


def _labels(text: str | None) -> list[str]:
    if text is None:
        return list(load_rules().default_labels)
    return [label.strip() for label in text.split(",") if label.strip()]


def _submitter(obj: dict[str, Any], services: Any) -> Actor:
    """The person the command acts for, if they may submit jobs (``Refused``, exit code 2, if not)."""
    from jobs.services.permissions import require

    actor = acting_actor(obj, services)
    require(actor, "jobs.submit")
    return actor


def _run_planner(services: Any, request: str, labels: list[str], planner_name: str | None, *, user_id: int) -> Any:
    """The planner's result; a planner that loads a model runs in a worker (started here when none runs)."""
    from contextlib import nullcontext

    from jobs.planning import PlanningFailed, plan_request

    name = planner_name or services.settings.planner
    try:
        with _worker_if_none(services, "interactive") if name in IN_WORKER else nullcontext():
            return plan_request(services, request, labels=labels, planner=name, user_id=user_id)
    except PlanningFailed as exc:
        raise click.ClickException(str(exc)) from None


def _report_plan(result: Any) -> None:
    """What the planner left out, on stderr (stdout stays pure JSON)."""
    for item in result.not_understood:
        click.echo(f"not understood: {item.clause!r}: {item.reason}", err=True)
    for rejection in result.rejections:
        click.echo(f"rejected: {json.dumps(rejection.item, ensure_ascii=False)}: {rejection.reason}", err=True)


@click.command()
@click.argument("request")
@click.option("--planner", "planner_name", type=click.Choice(PLANNER_CHOICES), default=None,
              help="Planner backend (default CHATEDIT_PLANNER).")
@click.option("--labels", default=None, help="Comma-separated labels of the image (default: the human-parsing labels).")
@click.pass_obj
def plan(obj: dict[str, Any], request: str, planner_name: str | None, labels: str | None) -> None:
    """Turn REQUEST into commands and print them as a JSON array (reasons for anything left out go to stderr)."""
    from db.models import LOCAL_USER_ID

    with open_services(obj, need_schema=False) as services:
        in_worker = (planner_name or services.settings.planner) in IN_WORKER
        if in_worker:
            from db.migrate import upgrade

            upgrade(services.database)  # its requests run as `plan` jobs
        # A planner that runs here needs no database: only a named person (--as) is looked up and checked.
        user_id = _submitter(obj, services).id if in_worker or acting_named(obj) else LOCAL_USER_ID
        result = _run_planner(services, request, _labels(labels), planner_name, user_id=user_id)
    _report_plan(result)
    click.echo(json.dumps(result.wire(), ensure_ascii=False))


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--commands", "commands_text", default=None, help="The commands as a JSON array.")
@click.option("--request", "request_text", default=None, help="Say what to do instead; the planner writes the commands.")
@click.option("--planner", "planner_name", type=click.Choice(PLANNER_CHOICES), default=None,
              help="With --request: the planner (default CHATEDIT_PLANNER).")
@click.option("--selection", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A mask PNG (white = selected), the size of IMAGE: the 'Selection' target.")
@click.option("--segmenter", type=click.Path(exists=True, path_type=Path), default=None,
              help="A segmenter for the labels: an ONNX file or a composite segmenter's folder (default: the one "
                   "configured). It needs this command's own worker.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the edited PNG (its recipe is embedded under the text key 'chatedit').")
@click.option("--timeout", type=click.FloatRange(0, 86_400), default=600.0, show_default=True,
              help="Give up waiting after this many seconds.")
@click.pass_obj
def edit(obj: dict[str, Any], image: Path, commands_text: str | None, request_text: str | None,
         planner_name: str | None, selection: Path | None, segmenter: Path | None, output: Path,
         timeout: float) -> None:
    """Edit IMAGE with commands (or a request) through the job queue, and write the result to -o."""
    from core.images import ImageRejected
    from core.masks import InvalidMask, mask_from_png
    from db.migrate import upgrade
    from jobs.edits import EditRequest, InvalidEdit, lane_for, parse_commands_text, submit_edit
    from jobs.histories import start_history
    from jobs.images import store_upload

    if (commands_text is None) == (request_text is None):
        raise click.UsageError("Give exactly one of --commands and --request.")
    started = time.perf_counter()
    with open_services(obj, need_schema=False) as services:
        upgrade(services.database)
        actor = _submitter(obj, services)
        if segmenter is not None:
            # A job names no file: this process's own worker gets the segmenter through its settings.
            services.settings = services.settings.model_copy(update={"segmenter": segmenter})
        try:
            stored = store_upload(services, image.read_bytes(), user_id=actor.id)
        except ImageRejected as exc:
            raise click.ClickException(str(exc)) from None
        selection_key = None
        if selection is not None:
            data = selection.read_bytes()
            try:
                mask_from_png(data, (stored.height, stored.width))
            except InvalidMask as exc:
                raise click.ClickException(f"The selection {selection} cannot be used: {exc}") from None
            selection_key = services.blobs.put(data)
        try:
            if commands_text is not None:
                commands = parse_commands_text(commands_text)
            else:
                commands = _plan_for_edit(services, stored.id, request_text or "", planner_name,
                                          has_selection=selection_key is not None, user_id=actor.id)
            if segmenter is not None and _lane_served(services, lane_for(commands, services.settings)):
                raise click.ClickException(
                    f"--segmenter needs this command's own worker, but a running worker serves the "
                    f"{lane_for(commands, services.settings)} lane with its own segmenter; stop it, or set "
                    "CHATEDIT_SEGMENTER for that worker instead.")
            history = start_history(services, stored.id, owner_id=actor.id, title=f"chatedit edit {image.name}")
            job_id = submit_edit(services, EditRequest(
                image_id=stored.id, commands=commands, history_id=history.history_id,
                parent_step_id=history.root_step_id, selection_key=selection_key, user_id=actor.id,
            ))
        except InvalidEdit as exc:
            raise click.ClickException(str(exc)) from None
        lane = services.queue.get(job_id).lane
        job = _wait_served(services, job_id, lane, timeout_s=timeout)
        if not job.terminal:
            raise click.ClickException(f"Job {job_id} did not finish within {timeout:g} s; it stays queued "
                                       f"(see `chatedit jobs show {job_id}`).")
        if job.status is not JobStatus.SUCCEEDED:
            raise click.ClickException(f"Job {job_id} {job.status.value}: {job.error_message or 'no reason given'}")
        # The job's own output, the image its step and result name, however often the job ran.
        edited = services.queue.output(job_id, "image")
        if edited is None:
            raise click.ClickException(f"Job {job_id} succeeded but stored no image; nothing was written to {output}.")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(services.blobs.get(edited.blob_key))
        result = job.result or {}
    _print_edit_summary(job_id, output, result, job, time.perf_counter() - started)


def _plan_for_edit(services: Any, image_id: int, request: str, planner_name: str | None,
                   *, has_selection: bool, user_id: int) -> list[dict[str, Any]]:
    """Commands from a request, planned against the labels this image really has."""
    from core.segmentation.default_segmenter import segmenter_in_use

    labels: list[str] = [load_rules().selection_label] if has_selection else []
    segmenter_path = segmenter_in_use(services.settings)
    if segmenter_path is not None:
        from jobs.segmentation import segment_image

        try:
            labels.extend(segment_image(services, image_id, segmenter_path).present)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
    result = _run_planner(services, request, labels, planner_name, user_id=user_id)
    _report_plan(result)
    click.echo(result.reply, err=True)
    if not result.commands:
        raise click.ClickException("The request gave no commands to run.")
    return result.wire()


def _alive_window_s(settings: Any) -> float:
    """How recent a worker's heartbeat must be for it to count as alive.

    A worker renews at least every third of the lease, so one silent for the whole lease
    is dead (its jobs are reaped then too), whatever the heartbeat setting says.
    """
    return min(settings.job_lease_seconds, 3 * settings.worker_heartbeat_seconds)


def _lane_served(services: Any, lane: str) -> bool:
    alive = services.queue.workers(alive_within_s=_alive_window_s(services.settings))
    return any(lane in w.lanes for w in alive)


@contextmanager
def _quiet_worker(services: Any, lane: str) -> Iterator[None]:
    """An in-process worker for ``lane`` while the block runs."""
    from jobs.worker import Worker

    worker_log = logging.getLogger("chatedit.worker")
    level = worker_log.level
    worker_log.setLevel(logging.WARNING)  # its per-job line would repeat what this command prints
    worker = Worker(services, lanes=[lane])
    worker.start()
    try:
        yield
    finally:
        worker.shutdown()
        worker_log.setLevel(level)


@contextmanager
def _worker_if_none(services: Any, lane: str) -> Iterator[None]:
    """Run an in-process worker for ``lane`` unless a live worker already serves it."""
    if _lane_served(services, lane):
        yield
        return
    with _quiet_worker(services, lane):
        yield


def _wait_served(services: Any, job_id: int, lane: str, *, timeout_s: float | None) -> Any:
    """Wait for the job to end, starting a worker in this process as soon as no live worker serves its lane.

    Checked again while waiting: a worker that was alive when the job was queued may die
    before it gets to the job, and then this command runs the job rather than wait for nobody.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    check_s = max(0.2, min(services.settings.worker_heartbeat_seconds, services.settings.job_lease_seconds / 3))
    with ExitStack() as own_worker:
        started = False
        while True:
            if not started and not _lane_served(services, lane):
                own_worker.enter_context(_quiet_worker(services, lane))
                started = True
            step = check_s if deadline is None else max(0.0, min(check_s, deadline - time.monotonic()))
            job = services.queue.wait(job_id, timeout_s=step)
            if job.terminal or (deadline is not None and time.monotonic() >= deadline):
                return job


def _print_edit_summary(job_id: int, output: Path, result: dict[str, Any], job: Any, total_s: float) -> None:
    timings = dict(result.get("timings", {}))
    if job.started_at is not None:
        timings["queue_s"] = (job.started_at - job.created_at).total_seconds()
    order = ("queue_s", "load_s", "segment_s", "mask_s", "op_s", "store_s")
    parts = ", ".join(f"{name[:-2]} {timings[name] * 1000:.0f} ms" for name in order if name in timings)
    click.echo(f"Job {job_id} wrote {output} (image {result.get('image_id')}, step {result.get('step_id')}) "
               f"in {total_s * 1000:.0f} ms: {parts}.")
    for note in result.get("notes", []):
        click.echo(f"note: {note}", err=True)


@click.group("eval")
def eval_group() -> None:
    """Measure planners (and, later, models) on datasets."""


#: ``--split`` choices; ``all`` evaluates every usable row of the version.
EVAL_SPLITS = ("test", "val", "train", "all")


@eval_group.command("planner")
@click.option("--planner", "planner_name", type=click.Choice((*PLANNER_CHOICES, "reference")), default="rules",
              show_default=True, help="'reference' scores the dataset's own outputs against the contract.")
@click.option("--dataset", required=True,
              help="A dataset in the database, NAME or NAME@VERSION (`chatedit datasets list`): run as a stored "
                   "evaluation run. Otherwise a registered dataset's name (CHATEDIT_EVAL_DATASETS) or a local "
                   "thesis-format JSON file, scored with the older validity / target-F1 report.")
@click.option("--split", type=click.Choice(EVAL_SPLITS), default=None,
              help="Which rows of a database dataset  [default: test]; 'all' takes every usable row.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N samples.")
@click.option("--constrained/--free", "constrained", default=None,
              help="The local planner: decode under the command grammar (the default) or freely.")
@click.option("--batch-size", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests the local planner decodes together.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def eval_planner(obj: dict[str, Any], planner_name: str, dataset: str, split: str | None, limit: int | None,
                 constrained: bool | None, batch_size: int, as_json: bool) -> None:
    """Every metric of a planner on a dataset: parse rate, validity, exact match, command F1, errors, latency.

    A dataset in the database runs as an ``eval_run`` batch job (a worker in this process when no
    live one serves the batch lane) and is stored: this command prints the stored run, the same
    numbers the Evaluation page shows. A registered dataset or a local file keeps the older report
    (validity, target-set F1, command-type accuracy); a file is read and evaluated here.
    """
    from db.migrate import upgrade
    from jobs.errors import PermanentError
    from jobs.handlers.eval_planner import evaluate_planner, registered_datasets

    settings = obj["settings"]
    registered = registered_datasets(settings)
    path = Path(dataset)
    if path.is_file() and dataset not in registered:
        _only_for_stored(dataset, split, constrained)
        try:
            report = evaluate_planner(planner_name, path, settings=settings, limit=limit)
        except PermanentError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(json.dumps(report, ensure_ascii=False, indent=2) if as_json else _format_report(report))
        return
    with open_services(obj, need_schema=False) as services:
        upgrade(services.database)
        actor = acting_actor(obj, services)
        version = _stored_dataset(services, actor, dataset)
        if version is not None:
            run = _stored_run(services, actor, planner_name, version, split=split, limit=limit,
                              constrained=constrained, batch_size=batch_size)
            if as_json:
                click.echo(json.dumps(_run_json(run), ensure_ascii=False, indent=2))
            else:
                click.echo(_format_run(run))
            click.echo(f"Stored as evaluation run {run.id}; the Evaluation page shows it.", err=as_json)
            return
        if dataset not in registered:
            names = ", ".join(sorted(registered)) or "none"
            raise click.BadParameter(f"{dataset!r} is neither a dataset in the database (`chatedit datasets list`), "
                                     f"a registered dataset ({names}), nor a file", param_hint="--dataset")
        _only_for_stored(dataset, split, constrained)
        actor = _submitter(obj, services)
        payload = {"planner": planner_name, "dataset": dataset, **({"limit": limit} if limit else {})}
        job_id = services.queue.enqueue("eval_planner", payload, lane="batch", max_attempts=1, owner_id=actor.id)
        job = _wait_served(services, job_id, "batch", timeout_s=None)
        if job.status is not JobStatus.SUCCEEDED:
            raise click.ClickException(f"Evaluation job {job_id} {job.status.value}: {job.error_message}")
        report = job.result or {}
    click.echo(json.dumps(report, ensure_ascii=False, indent=2) if as_json else _format_report(report))


def _only_for_stored(dataset: str, split: str | None, constrained: bool | None) -> None:
    """--split and --constrained/--free choose rows and decoding of database datasets; a file is scored whole."""
    if split is not None or constrained is not None:
        raise click.UsageError(f"--split and --constrained/--free apply to datasets in the database; {dataset!r} is "
                               "a file or a registered dataset, scored whole (import it with `chatedit datasets "
                               "import` to choose a split).")


def _stored_dataset(services: Any, actor: Actor, dataset: str) -> Any:
    """The database dataset version ``dataset`` names (NAME or NAME@N), or None when no such dataset exists.

    A dataset that exists without the version asked for is an error, not another kind of dataset; so is
    a person who may not manage datasets naming one.
    """
    from jobs.services import datasets as door
    from jobs.services.permissions import PermissionDenied, allowed

    try:
        name, number = door.parse_spec(dataset)
    except door.DatasetError:
        return None
    if not allowed(actor, "datasets.manage"):
        return None
    try:
        return door.get_version(services, actor, name, number)
    except door.DatasetNotFound:
        if number is None:
            return None
        try:
            door.get_version(services, actor, name)
        except door.DatasetNotFound:
            return None
        raise click.ClickException(f"There is no version {number} of dataset {name!r}; "
                                   "`chatedit datasets list` shows its versions.") from None
    except PermissionDenied as exc:
        raise Refused(str(exc)) from None


def _stored_run(services: Any, actor: Actor, planner_name: str, version: Any, *, split: str | None,
                limit: int | None, constrained: bool | None, batch_size: int) -> Any:
    """Queue an ``eval_run`` of ``version``, wait for it (running a worker here if need be), and read it back."""
    from app.cli_datasets import _wait
    from jobs.services import datasets as door
    from jobs.services import evaluations
    from jobs.services.permissions import PermissionDenied

    chosen = split or "test"
    try:
        job_id = evaluations.submit_run(services, actor, planner=planner_name, dataset=version.spec,
                                        split=None if chosen == "all" else chosen, constrained=constrained,
                                        limit=limit, batch_size=batch_size)
    except PermissionDenied as exc:
        raise Refused(str(exc)) from None
    except (evaluations.EvaluationError, door.DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Queued the evaluation of {planner_name} on {version.spec}"
               f"{'' if chosen == 'all' else '/' + chosen} as job {job_id}.", err=True)
    job = _wait(services, job_id, timeout_s=None)
    run = evaluations.run_of_job(services, actor, job_id)
    if job.status is not JobStatus.SUCCEEDED or run is None:
        reason = (job.error_message or "no reason was recorded").strip().rstrip(".")
        kept = f" Run {run.id} keeps the {run.example_count:,} examples scored before that." if run is not None \
            and run.example_count else ""
        raise click.ClickException(f"The evaluation (job {job_id}) {job.status.value}: {reason}.{kept}")
    return run


def _run_json(run: Any) -> dict[str, Any]:
    return {"run_id": run.id, "run": run.label, "planner": run.planner, "planner_detail": run.planner_detail,
            "constrained": run.constrained, "dataset": run.dataset, "split": run.split, "status": run.status,
            "examples": run.example_count, "timings": run.timings, "metrics": run.metrics}


def _format_run(run: Any) -> str:
    """Every metric of a stored run, then per language, per command and per error type."""
    from jobs.services.evaluations import ERROR_TYPES, LANGUAGE_METRICS, METRIC_LABELS, format_metric, metrics_table

    metrics = run.metrics
    width = max(len(label) for label in METRIC_LABELS.values())
    lines = [f"Run #{run.id}: {run.label.split(' ', 1)[1]}, {run.example_count:,} examples"
             + (f" in {run.timings['wall_s']:g} s" if run.timings.get("wall_s") is not None else "") + "."]
    lines += [f"  {METRIC_LABELS[name]:<{width}}  {format_metric(name, value)}" for name, value in metrics_table(metrics)]
    per_language = metrics.get("per_language") or {}
    if per_language:
        lines.append("Per language:")
        for language, row in per_language.items():
            shown = ", ".join(f"{METRIC_LABELS[n].split(' (')[0].lower()} {format_metric(n, row.get(n))}"
                              + (" s" if n.startswith("latency") and row.get(n) is not None else "")
                              for n in LANGUAGE_METRICS if n != "examples")
            count = int(row.get("examples") or 0)
            lines.append(f"  {language} ({count:,} example{'' if count == 1 else 's'}): {shown}")
    per_command = metrics.get("per_command") or {}
    if per_command:
        lines.append("Per command (F1, expected / produced):")
        lines += [f"  {name:<10} {format_metric('f1_micro', row.get('f1')):>6}  ({row.get('support', 0)} / "
                  f"{row.get('produced', 0)})" for name, row in per_command.items()]
    errors = metrics.get("errors") or {}
    found = [f"{kind.replace('_', ' ')} {errors[kind]}" for kind in ERROR_TYPES if errors.get(kind)]
    lines.append("Examples with each error: " + (", ".join(found) if found else "none") + ".")
    return "\n".join(lines)


def _format_report(r: dict[str, Any]) -> str:
    return "\n".join([
        f"Planner {r['planner']} on {r['dataset']}: {r['samples']} samples "
        f"({r['reference_unparsable']} with an unparsable reference, left out of F1 and type accuracy).",
        f"  validity rate          {r['validity_rate']:6.1%}   (samples with >=1 command, all valid for their labels)",
        f"  valid commands         {r['valid_command_share']:6.1%}   (of all commands written)",
        f"  target-set F1          {r['target_f1']:6.3f}   (mean per sample; pooled {r['target_f1_micro']:.3f}, "
        f"P {r['target_precision_micro']:.3f}, R {r['target_recall_micro']:.3f})",
        f"  command-type accuracy  {r['command_type_accuracy']:6.1%}   (same set of command names as the reference)",
        f"  time                   {r['seconds']:6.2f} s",
    ])
