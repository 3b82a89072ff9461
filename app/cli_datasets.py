"""``chatedit datasets``: the dataset studio from the command line (list, import, generate, harvest, merge,
split, export).

Every command acts for the person ``chatedit --as NAME`` names (default the local admin), who needs
``datasets.manage`` like on the Datasets page; a refusal is one sentence and exit code 2. Import,
generation and harvest are batch jobs, queued and waited for; when no live worker serves the batch
lane, this process runs one while it waits (as ``chatedit edit`` does), so the command works on a
machine where nothing else runs. Ctrl-C while waiting cancels the job. Merge, split and export are
quick door calls made here.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from app.cli_common import Refused, acting_actor, open_services
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services
from jobs.services import datasets as door
from jobs.services.permissions import Actor, PermissionDenied

IMPORT_FORMATS = ("seed", "alpaca", "sharegpt", "openai")
EXPORT_FORMATS = ("alpaca", "sharegpt", "openai")
#: The request languages generation writes (the generate job's payload checks them again).
LANGUAGES = ("en", "zh")
#: Rows left out of an import that the command lists by reason (the rest are counted).
SHOWN_REJECTED = 20


@click.group()
def datasets() -> None:
    """Fine-tuning datasets: import, generate, harvest, merge, split and export (for admins)."""


def register(cli: click.Group) -> None:
    """Add the ``datasets`` group to the ``chatedit`` command."""
    cli.add_command(datasets)


def _call(obj: dict[str, Any], action: Any) -> Any:
    """``action(services, actor)`` for the person the command acts for, every refusal or mistake one sentence.

    A refused permission exits with code 2 (as every door's refusal does); a request that cannot be
    done (an unknown dataset, a bad name) with code 1.
    """
    with open_services(obj) as services:
        actor = acting_actor(obj, services)
        try:
            return action(services, actor)
        except PermissionDenied as exc:
            raise Refused(str(exc)) from None
        except door.DatasetError as exc:
            raise click.ClickException(str(exc)) from None


def _spec(text: str) -> tuple[str, int | None]:
    try:
        return door.parse_spec(text)
    except door.DatasetError as exc:
        raise click.BadParameter(str(exc)) from None


def _fractions(text: str) -> tuple[float, float, float]:
    """``0.8,0.1,0.1`` → train, val and test shares (they must add up to 1)."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"give three numbers such as 0.8,0.1,0.1, not {text!r}",
                                 param_hint="--fractions") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise click.BadParameter(f"give three shares (train, val, test) that add up to 1, not {text!r}",
                                 param_hint="--fractions")
    return parts  # type: ignore[return-value]


def _languages(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in chosen if x not in LANGUAGES]
    if not chosen or unknown:
        raise click.BadParameter(f"choose from {', '.join(LANGUAGES)} (comma-separated), not {text!r}",
                                 param_hint="--languages")
    return chosen


# ---------------------------------------------------------------------- jobs


def _wait(services: Services, job_id: int, *, timeout_s: float | None) -> JobRecord:
    """Wait for a batch job, showing its progress on stderr; run a worker here whenever no live one serves batch.

    Like ``chatedit edit``'s wait, the check is made again while waiting: a worker that dies
    before it gets to the job is replaced by this process's own. Ctrl-C cancels the job.
    """
    from app.cli_edit import _lane_served, _quiet_worker

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    check_s = max(0.2, min(services.settings.worker_heartbeat_seconds, services.settings.job_lease_seconds / 3))
    shown = ""
    with ExitStack() as own_worker:
        started = False
        try:
            while True:
                if not started and not _lane_served(services, "batch"):
                    own_worker.enter_context(_quiet_worker(services, "batch"))
                    started = True
                step = check_s if deadline is None else max(0.0, min(check_s, deadline - time.monotonic()))
                job = services.queue.wait(job_id, timeout_s=step)
                line = f"{job.status.value:<9} {job.progress:>4.0%} {job.progress_message or ''}"
                if line != shown and not job.terminal:
                    click.echo(f"\r{line[:100]:<100}", nl=False, err=True)
                    shown = line
                if job.terminal or (deadline is not None and time.monotonic() >= deadline):
                    break
        except KeyboardInterrupt:
            services.queue.cancel(job_id)
            if shown:
                click.echo("", err=True)
            raise click.ClickException(f"Interrupted: job {job_id} was asked to stop; nothing is kept of it.") \
                from None
    if shown:
        click.echo("", err=True)
    return job


def _finished(services: Services, job_id: int, timeout_s: float | None, what: str) -> dict[str, Any]:
    """The job's result once it succeeded; a sentence (exit 1) when it failed, was cancelled or ran out of time."""
    job = _wait(services, job_id, timeout_s=timeout_s)
    if not job.terminal:
        raise click.ClickException(f"{what.capitalize()} (job {job_id}) did not finish within {timeout_s:g} s; it "
                                   f"goes on in the queue (see `chatedit jobs show {job_id}`).")
    if job.status is not JobStatus.SUCCEEDED:
        reason = (job.error_message or "no reason was recorded").strip().rstrip(".")
        raise click.ClickException(f"{what.capitalize()} (job {job_id}) {job.status.value}: {reason}.")
    return dict(job.result or {})


def _submitted(obj: dict[str, Any], submit: Any, what: str, timeout_s: float | None) -> dict[str, Any]:
    """Queue a job with ``submit(services, actor)`` for the person the command acts for, and wait for it."""
    def action(services: Services, actor: Actor) -> dict[str, Any]:
        job_id = submit(services, actor)
        click.echo(f"Queued {what} as job {job_id}.", err=True)
        return _finished(services, job_id, timeout_s, what)

    return _call(obj, action)


_TIMEOUT = click.option("--timeout", type=click.FloatRange(0, 7 * 86_400), default=None,
                        help="Give up waiting after this many seconds (the job goes on in the queue).")


# ---------------------------------------------------------------------- commands


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def datasets_list(obj: dict[str, Any], as_json: bool) -> None:
    """Every dataset and its versions: rows, rows set aside, splits, who made each and why."""
    summaries: list[door.DatasetSummary] = _call(obj, door.list_datasets)
    if as_json:
        click.echo(json.dumps([{"name": d.name, "created_at": d.created_at.isoformat(),
                                "versions": [_version_json(v) for v in d.versions]} for d in summaries],
                              indent=2, ensure_ascii=False))
        return
    if not summaries:
        click.echo("No datasets yet; `chatedit datasets import` or `generate` makes one.")
        return
    click.echo(f"{'VERSION':<28} {'ROWS':>7} {'ASIDE':>6} {'TRAIN/VAL/TEST':<20} {'BY':<12} {'WHEN':<16}  NOTE")
    for summary in summaries:
        for v in summary.versions:
            click.echo(f"{v.spec[:28]:<28} {v.row_count:>7,} {v.aside_count:>6,} {_splits(v):<20} "
                       f"{v.created_by[:12]:<12} {v.created_at.astimezone().strftime('%Y-%m-%d %H:%M'):<16}  "
                       f"{v.note}")


def _splits(version: door.VersionRecord) -> str:
    if version.split_seed is None:
        return "-"
    counts = version.split_counts
    return "/".join(f"{counts.get(s, 0):,}" for s in ("train", "val", "test"))


def _version_json(v: door.VersionRecord) -> dict[str, Any]:
    return {"spec": v.spec, "number": v.number, "parent": v.parent_number, "rows": v.row_count,
            "aside": v.aside_count, "split_seed": v.split_seed, "splits": v.split_counts, "note": v.note,
            "job_id": v.job_id, "stats": v.stats, "created_by": v.created_by, "created_at": v.created_at.isoformat()}


@datasets.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(IMPORT_FORMATS), required=True,
              help="seed: the thesis file as it is; alpaca / sharegpt: LLaMA-Factory; openai: chat JSONL.")
@click.option("--name", default=None, help="The dataset (default: the file's name without its extension); an "
                                           "existing one gets a new version with these rows added.")
@click.option("--keep-invalid", is_flag=True, help="Keep rows that fail a check (set aside) instead of leaving "
                                                   "them out.")
@_TIMEOUT
@click.pass_obj
def datasets_import(obj: dict[str, Any], file: Path, fmt: str, name: str | None, keep_invalid: bool,
                    timeout: float | None) -> None:
    """Import FILE as a new version of a dataset (a batch job); rows that break the contract are listed."""
    data = file.read_bytes()
    result = _submitted(obj, lambda services, actor: door.submit_import(
        services, actor, data, file_name=file.name, fmt=fmt, name=name, keep_invalid=keep_invalid),
        f"the import of {file.name}", timeout)
    rejected = int(result.get("rejected_count", 0))
    click.echo(f"Imported {result.get('rows', 0):,} rows into {result.get('dataset')}@{result.get('version')}"
               + (f"; {rejected:,} left out." if rejected else "."))
    for item in list(result.get("rejected") or [])[:SHOWN_REJECTED]:
        click.echo(f"left out: row {int(item['index']) + 1}: {item['reason']}", err=True)
    if rejected > SHOWN_REJECTED:
        click.echo(f"left out: … and {rejected - SHOWN_REJECTED:,} more (the Datasets page lists them).", err=True)


@datasets.command("generate")
@click.option("--templates", type=click.IntRange(0), default=0, show_default=True,
              help="Rows written from the rules file by phrasing templates.")
@click.option("--llm", type=click.IntRange(0), default=0, show_default=True,
              help="Rows written by the OpenAI-compatible model (CHATEDIT_OPENAI_MODEL), then checked.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--languages", default="en,zh", show_default=True, help="Comma-separated request languages.")
@click.option("--llm-mode", type=click.Choice(("paraphrase", "write")), default="paraphrase", show_default=True,
              help="paraphrase: the model rewrites template requests; write: it writes requests for programs.")
@click.option("--name", default="generated", show_default=True,
              help="The dataset; an existing one gets a new version with these rows added.")
@_TIMEOUT
@click.pass_obj
def datasets_generate(obj: dict[str, Any], templates: int, llm: int, seed: int, languages: str, llm_mode: str,
                      name: str, timeout: float | None) -> None:
    """Generate rows (a batch job): templates, an LLM, or both; rows that fail a check are set aside."""
    if templates + llm == 0:
        raise click.UsageError("Ask for some rows: --templates N, --llm N or both.")
    chosen = _languages(languages)
    result = _submitted(obj, lambda services, actor: door.submit_generate(
        services, actor, name, templates=templates, llm=llm, seed=seed, languages=chosen, llm_mode=llm_mode),
        "the generation", timeout)
    aside = int(result.get("aside", 0))
    click.echo(f"Generated {result.get('rows', 0):,} rows into {result.get('dataset')}@{result.get('version')}"
               + (f"; {aside:,} set aside by a failed check." if aside else "."))
    if "prompt_tokens" in result:
        click.echo(f"LLM: {result.get('llm_requests', 0):,} requests, {result['prompt_tokens']:,} prompt and "
                   f"{result.get('completion_tokens', 0):,} completion tokens.")


@datasets.command("harvest")
@click.option("--name", default="harvested", show_default=True, help="The dataset the approved steps go to.")
@_TIMEOUT
@click.pass_obj
def datasets_harvest(obj: dict[str, Any], name: str, timeout: float | None) -> None:
    """Turn the steps approved in review into rows (a batch job); steps harvested before are not added again."""
    result = _submitted(obj, lambda services, actor: door.submit_harvest(services, actor, name), "the harvest",
                        timeout)
    click.echo(f"Harvested {result.get('rows', 0):,} approved steps into {result.get('dataset')}@"
               f"{result.get('version')}.")


def _reread(services: Services, actor: Actor, made: door.VersionRecord) -> door.VersionRecord:
    """The version as stored (its split counts as the list shows them), read back after it was made."""
    return door.get_version(services, actor, made.dataset, made.number)


@datasets.command("merge")
@click.argument("name")
@click.argument("sources", nargs=-1, required=True)
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="The split's seed.")
@click.option("--fractions", default="0.8,0.1,0.1", show_default=True, help="Train, val and test shares.")
@click.option("--keep-duplicates", is_flag=True, help="Do not remove near-duplicate requests.")
@click.pass_obj
def datasets_merge(obj: dict[str, Any], name: str, sources: tuple[str, ...], seed: int, fractions: str,
                   keep_duplicates: bool) -> None:
    """A new version of NAME from the usable rows of SOURCES (each NAME[@VERSION]), deduplicated and split."""
    for source in sources:
        _spec(source)
    shares = _fractions(fractions)
    version: door.VersionRecord = _call(obj, lambda services, actor: _reread(services, actor, door.merge(
        services, actor, name, list(sources), seed=seed, fractions=shares, dedupe=not keep_duplicates)))
    click.echo(f"Made {version.spec}: {version.row_count:,} rows, train/val/test {_splits(version)} "
               f"({version.note}).")


@datasets.command("split")
@click.argument("spec", metavar="NAME[@VERSION]")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--fractions", default="0.8,0.1,0.1", show_default=True, help="Train, val and test shares.")
@click.pass_obj
def datasets_split(obj: dict[str, Any], spec: str, seed: int, fractions: str) -> None:
    """A new version with the rows drawn into train/val/test (stratified; no request in two splits)."""
    name, number = _spec(spec)
    shares = _fractions(fractions)
    version: door.VersionRecord = _call(obj, lambda services, actor: _reread(services, actor, door.split(
        services, actor, name, number, seed=seed, fractions=shares)))
    click.echo(f"Made {version.spec}: train/val/test {_splits(version)}"
               + (f", {version.aside_count:,} set aside" if version.aside_count else "") + ".")


@datasets.command("export")
@click.argument("spec", metavar="NAME[@VERSION]")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="alpaca / sharegpt: LLaMA-Factory (with dataset_info.json); openai: chat JSONL.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The directory to write into (made when missing).")
@click.pass_obj
def datasets_export(obj: dict[str, Any], spec: str, fmt: str, output: Path) -> None:
    """Write a version's usable rows (not those set aside) for training, with a dataset_info.json."""
    name, number = _spec(spec)
    if output.exists() and not output.is_dir():
        raise click.BadParameter(f"{output} is a file, not a directory", param_hint="-o")

    def action(services: Services, actor: Actor) -> tuple[door.VersionRecord, list[Path]]:
        version = door.get_version(services, actor, name, number)
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.ClickException(f"Cannot make the directory {output}: {exc.strerror or exc}.") from None
        return version, door.export(services, actor, name, version.number, fmt, output)

    version, paths = _call(obj, action)
    click.echo(f"Wrote {version.spec} ({version.row_count - version.aside_count:,} rows, {fmt}) to {output}:")
    for path in paths:
        click.echo(f"  {path}")
