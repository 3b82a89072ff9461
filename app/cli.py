"""The ``chatedit`` command line.

Every error a person can cause ends as one sentence on stderr and exit code 1 (2 for
a usage mistake, or for a refusal of the person the command acts for: ``--as NAME``),
never a traceback. Heavy modules are imported inside the command
that needs them, so ``chatedit --help`` and ``jobs list`` start fast.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import click

from app.cli_common import ACTING_AS, Refused, acting_actor, configure_logging, open_services
from core.errors import first_text_line
from core.settings import LANES, Settings, SettingsError, load_settings
from jobs.errors import InvalidJobRequest
from jobs.queue import PRIORITY_RANGE, JobRecord, JobStatus
from jobs.services.permissions import Actor

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("chatedit")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chatedit")
@click.option("--as", "acting_as", metavar="NAME", envvar="CHATEDIT_CLI_USER", default=None,
              help="The person the command acts for, checked like a signed-in person (CHATEDIT_CLI_USER; "
                   "default: the local admin).")
@click.pass_context
def cli(ctx: click.Context, acting_as: str | None) -> None:
    """ChatEdit: a conversational image editor backed by a job database.

    Configuration comes from CHATEDIT_* environment variables and an optional
    chatedit.toml (or the file named by CHATEDIT_CONFIG).
    """
    try:
        ctx.obj = {"settings": load_settings(), ACTING_AS: acting_as or None}
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(ctx.obj["settings"])


@cli.command()
@click.pass_obj
def init(obj: dict[str, Any]) -> None:
    """Create the database schema, or upgrade it to this version."""
    from db.migrate import current_revision, upgrade

    with open_services(obj, need_schema=False) as services:
        before = current_revision(services.database)
        after = upgrade(services.database)
        verb = "Created" if before is None else ("Upgraded" if before != after else "Checked")
        click.echo(f"{verb} the ChatEdit schema (revision {after}) in {services.database!r}.")
        click.echo(f"Image files go to the '{services.settings.blob_store}' blob store; data dir: "
                   f"{services.settings.data_dir.resolve()}.")


@cli.command()
@click.option("--lanes", default=",".join(LANES), show_default=True,
              help="Comma-separated lanes to serve, in order of preference.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Jobs this process runs at once.")
@click.option("--name", default=None, help="Worker id shown on the Status page (default host:pid:random).")
@click.pass_obj
def worker(obj: dict[str, Any], lanes: str, concurrency: int, name: str | None) -> None:
    """Run a worker: claim jobs of LANES and run them until SIGTERM or Ctrl-C."""
    from jobs.worker import Worker, parse_lanes

    try:
        lane_list = parse_lanes(lanes)
    except InvalidJobRequest as exc:
        raise click.BadParameter(str(exc), param_hint="--lanes") from None
    with open_services(obj, pool_size=concurrency + 3) as services:
        code = Worker(services, lanes=lane_list, concurrency=concurrency, worker_id=name).run()
    sys.exit(code)


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port of the web app (CHATEDIT_PORT).")
@click.option("--host", default=None, help="Address to bind (CHATEDIT_HOST).")
@click.pass_obj
def serve(obj: dict[str, Any], port: int | None, host: str | None) -> None:
    """Upgrade the schema, then run the web app and a worker for every lane until Ctrl-C."""
    from app.cli_segmentation import install_default_if_missing
    from db.migrate import upgrade

    settings: Settings = obj["settings"]
    port = settings.port if port is None else port
    host = settings.host if host is None else host
    warning = open_access_warning(settings, host)  # refuses before anything starts
    with open_services(obj, need_schema=False) as services:
        revision = upgrade(services.database)
    click.echo(f"Database ready (revision {revision}): {settings.resolved_database_url.split('@')[-1]}")
    install_default_if_missing(settings)
    if warning:
        click.secho(warning, fg="yellow", err=True)
    children = {f"worker[{lane}]": [sys.executable, "-m", "app.cli", "worker", "--lanes", lane] for lane in LANES}
    children["web app"] = _streamlit_command(host, port, settings)
    env = dict(os.environ)
    env["CHATEDIT_PORT"] = str(port)
    env["CHATEDIT_HOST"] = str(host)
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    click.echo(f"ChatEdit is at http://{shown}:{port}")
    sys.exit(_supervise(children, env, grace_s=settings.worker_shutdown_grace_seconds))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_access_warning(settings: Settings, host: str) -> str | None:
    """Serving beyond loopback with sign-in off: refused, or (with CHATEDIT_ALLOW_OPEN_ACCESS) a warning to print."""
    if settings.auth_methods or is_loopback(host):
        return None
    if not settings.allow_open_access:
        raise click.ClickException(
            f"Sign-in is off (CHATEDIT_AUTH=off) and the app would listen on {host}, where anyone who reaches the "
            "port acts as the admin. Set CHATEDIT_AUTH=local (people sign in; the first visit creates the admin), "
            "or set CHATEDIT_ALLOW_OPEN_ACCESS=true if this network is yours alone, or serve on 127.0.0.1.")
    return (f"Warning: sign-in is off (CHATEDIT_AUTH=off) and the app listens on {host} "
            "(CHATEDIT_ALLOW_OPEN_ACCESS=true): anyone who reaches this port acts as the admin.")


def _streamlit_command(host: str, port: int, settings: Settings) -> list[str]:
    """The web app as a child process: headless, no usage statistics, uploads capped like the image loader."""
    from pathlib import Path

    entry = Path(__file__).with_name("streamlit_app.py")
    upload_mb = max(1, -(-settings.max_upload_bytes // 2**20))  # Streamlit counts whole megabytes
    return [sys.executable, "-m", "streamlit", "run", str(entry), "--server.port", str(port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(upload_mb), "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal"]


def _supervise(children: dict[str, list[str]], env: dict[str, str], *, grace_s: float) -> int:
    """Run child processes, restart one that dies (with backoff), stop all on Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def start(name: str) -> subprocess.Popen[bytes]:
        # Own session: Ctrl-C reaches only us, and each child gets exactly one SIGTERM from us.
        return subprocess.Popen(children[name], env=env, start_new_session=True)

    procs = {name: start(name) for name in children}
    restarts = {name: 0 for name in children}
    click.echo(f"Running {', '.join(children)}. Press Ctrl-C to stop.")
    while not stop.wait(0.5):
        for name, proc in list(procs.items()):
            code = proc.poll()
            if code is None:
                continue
            restarts[name] += 1
            delay = min(30.0, 2.0 ** restarts[name])
            log.error("%s exited with code %s; restarting in %.0f s", name, code, delay)
            if stop.wait(delay):
                break
            procs[name] = start(name)
    click.echo("Stopping: running jobs finish or go back to the queue ...")
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s + 10.0
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop in time; killing it", name)
            proc.kill()
            proc.wait()
    click.echo("Stopped.")
    return 0


# ---------------------------------------------------------------------------- jobs


@cli.group()
def jobs() -> None:
    """List, inspect, submit, cancel and retry jobs."""


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _job_json(job: JobRecord) -> dict[str, Any]:
    data = asdict(job)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    data["status"] = job.status.value
    return data


def _summary(job: JobRecord) -> str:
    if job.error_message and job.status is not JobStatus.SUCCEEDED:
        return first_text_line(job.error_message)[:60]
    if job.status is JobStatus.RUNNING:
        return f"{job.progress:.0%} {job.progress_message or ''}".strip()
    return ""


@jobs.command("list")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
              help="Only jobs with this status (repeatable).")
@click.option("--lane", type=click.Choice(list(LANES)), default=None)
@click.option("--kind", default=None)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def jobs_list(obj: dict[str, Any], statuses: tuple[str, ...], lane: str | None, kind: str | None, limit: int,
              as_json: bool) -> None:
    """The newest jobs (your own; an admin's: everyone's), and the queue depth per lane."""
    from jobs.services.permissions import allowed

    with open_services(obj) as services:
        actor = acting_actor(obj, services)  # an unknown or disabled --as is refused, whatever the command
        owner = None if allowed(actor, "history.read_private") else actor.id  # an admin lists everyone's
        records = services.queue.list(status=list(statuses) or None, lane=lane, kind=kind, limit=limit,
                                      owner_id=owner)
        counts = services.queue.counts()
    if as_json:
        click.echo(json.dumps([_job_json(j) for j in records], indent=2))
        return
    if not records:
        click.echo("No jobs.")
    else:
        click.echo(f"{'ID':>6}  {'KIND':<12} {'LANE':<11} {'STATUS':<10} {'TRY':>5}  {'CREATED':<19}  NOTE")
        for j in records:
            click.echo(f"{j.id:>6}  {j.kind[:12]:<12} {j.lane:<11} {j.status.value:<10} "
                       f"{j.attempts}/{j.max_attempts:<3} {_when(j.created_at):<19}  {_summary(j)}")
    depth = ", ".join(f"{ln}: {counts.get((ln, 'queued'), 0)} queued, {counts.get((ln, 'running'), 0)} running"
                      for ln in LANES)
    click.echo(f"Queue — {depth}")


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def jobs_show(obj: dict[str, Any], job_id: int, as_json: bool) -> None:
    """Everything about one job."""
    with open_services(obj) as services:
        actor = acting_actor(obj, services)
        job = services.queue.get(job_id)
        _require_own_job(services, actor, job, "see", "history.read_private")
        outputs = services.queue.outputs(job_id)
    if as_json:
        data = _job_json(job)
        data["outputs"] = [{"name": o.name, "blob_key": o.blob_key, "byte_size": o.byte_size} for o in outputs]
        click.echo(json.dumps(data, indent=2))
        return
    rows = [
        ("job", f"{job.id} ({job.kind}, lane {job.lane}, priority {job.priority}, owner {job.owner_id})"),
        ("status", job.status.value + (" — cancel requested" if job.cancel_requested and not job.terminal else "")),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("progress", f"{job.progress:.0%} {job.progress_message or ''}".strip()),
        ("created", _when(job.created_at)),
        ("run after", _when(job.run_after)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("worker", job.lease_owner or ""),
        ("retry of", str(job.retry_of or "")),
        ("payload", json.dumps(job.payload, ensure_ascii=False)),
        ("result", "" if job.result is None else json.dumps(job.result, ensure_ascii=False)),
        ("error", f"{job.error_type}: {job.error_message}" if job.error_type else ""),
    ]
    for key, value in rows:
        if value:
            click.echo(f"{key:>10}  {value}")
    for o in outputs:
        click.echo(f"{'output':>10}  {o.name} ({o.byte_size} bytes, blob {o.blob_key[:12]}…)")
    if job.error_traceback and job.status is JobStatus.FAILED:
        click.echo("\n" + job.error_traceback.rstrip())


@jobs.command("submit")
@click.argument("kind")
@click.option("--payload", default="{}", help="JSON object handed to the handler.")
@click.option("--lane", type=click.Choice(list(LANES)), default="interactive", show_default=True)
@click.option("--priority", type=click.IntRange(*PRIORITY_RANGE), default=0, show_default=True,
              help="Higher runs first.")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=None)
@click.option("--wait", is_flag=True, help="Wait for the job to finish, showing its progress.")
@click.option("--timeout", type=click.FloatRange(0, 86_400), default=None,
              help="With --wait: give up waiting after this many seconds.")
@click.pass_obj
def jobs_submit(obj: dict[str, Any], kind: str, payload: str, lane: str, priority: int, max_attempts: int | None,
                wait: bool, timeout: float | None) -> None:
    """Queue a job of KIND (e.g. `noop`) and print its id."""
    from core.text import UnsafeText, check_json
    from jobs.registry import HandlerRegistry, check_payload

    known = HandlerRegistry().kinds
    if kind not in known:
        raise click.BadParameter(f"there is no job kind {kind!r}; the kinds are {', '.join(known)}", param_hint="KIND")
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg} at character {exc.pos})", param_hint="--payload") from None
    except RecursionError:
        raise click.BadParameter("nested too deeply", param_hint="--payload") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    try:
        check_json(check_payload(kind, data), "the payload")
    except (InvalidJobRequest, UnsafeText) as exc:
        raise click.BadParameter(str(exc), param_hint="--payload") from None
    with open_services(obj) as services:
        actor = acting_actor(obj, services)
        job_id = services.queue.enqueue(kind, data, lane=lane, priority=priority, max_attempts=max_attempts,
                                        owner_id=actor.id)
        click.echo(str(job_id))
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        job = services.queue.get(job_id)
        while not job.terminal and (deadline is None or time.monotonic() < deadline):
            click.echo(f"\r{job.status.value:<9} {job.progress:>4.0%} {job.progress_message or '':<40}", nl=False,
                       err=True)
            time.sleep(0.2)
            job = services.queue.get(job_id)
        click.echo("", err=True)
    if not job.terminal:
        raise click.ClickException(f"Job {job_id} is still {job.status.value} after {timeout:g} s.")
    if job.status is not JobStatus.SUCCEEDED:
        raise click.ClickException(f"Job {job_id} {job.status.value}: {job.error_message or 'no reason recorded'}")
    click.echo(json.dumps(job.result, ensure_ascii=False))


@jobs.command("cancel")
@click.argument("job_id", type=int)
@click.pass_obj
def jobs_cancel(obj: dict[str, Any], job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    from jobs.queue import CancelOutcome

    with open_services(obj) as services:
        _require_own_job(services, acting_actor(obj, services), services.queue.get(job_id), "cancel")
        outcome = services.queue.cancel(job_id)
    click.echo({
        CancelOutcome.CANCELLED: f"Job {job_id} cancelled.",
        CancelOutcome.REQUESTED: f"Job {job_id} is running; asked it to stop.",
        CancelOutcome.ALREADY_FINISHED: f"Job {job_id} had already finished; nothing to cancel.",
    }[outcome])


@jobs.command("retry")
@click.argument("job_id", type=int)
@click.pass_obj
def jobs_retry(obj: dict[str, Any], job_id: int) -> None:
    """Queue a failed or cancelled job again (as a new job)."""
    with open_services(obj) as services:
        _require_own_job(services, acting_actor(obj, services), services.queue.get(job_id), "retry")
        new_id = services.queue.retry(job_id)
    click.echo(f"Job {job_id} queued again as job {new_id}.")


def _require_own_job(services: Any, actor: Actor, job: JobRecord, verb: str,
                     permission: str = "history.write_any") -> None:
    """A person sees, cancels or retries their own jobs; an admin anyone's.

    A job's payload carries its request (words from a private history, perhaps), so other people's
    jobs take what other people's histories take: ``history.read_private`` to see, ``history.write_any``
    to change.
    """
    from jobs.services.permissions import UnknownUser, actor_for, allowed

    if job.owner_id == actor.id or allowed(actor, permission):
        return
    try:
        owner = f"{actor_for(services, job.owner_id).label}'s"
    except UnknownUser:
        owner = "someone else's"
    raise Refused(f"{actor.label} ({actor.role}) may not {verb} job {job.id}: it is {owner}, "
                  "and only its owner or an admin may.")


def _register_command_groups() -> None:
    """Commands that live in their own modules, so this file stays the foundation's commands."""
    from app import cli_datasets, cli_edit, cli_finetune, cli_segmentation, cli_users

    cli_datasets.register(cli)
    cli_edit.register(cli)
    cli_finetune.register(cli)
    cli_segmentation.register(cli)
    cli_users.register(cli)


_register_command_groups()


def main() -> None:
    cli(prog_name="chatedit")


if __name__ == "__main__":
    main()
