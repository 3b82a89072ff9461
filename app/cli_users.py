"""``chatedit users``: accounts and roles from the command line.

The command line acts as the local admin (the audit log names it), or as the person named by
``chatedit --as NAME``, who needs ``users.manage`` like on the Accounts page (a person may set
their own password). A password is read from
standard input, one line, never from an argument: arguments are visible to every process
on the machine and kept in shell histories.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from app.cli_common import Refused, acting_actor, open_services
from db.models import USER_ROLES
from jobs.services.accounts import Account, AccountError, Accounts
from jobs.services.permissions import PermissionDenied, UnknownUser


@click.group()
def users() -> None:
    """List, create and change accounts (as the local admin, or the admin named by --as)."""


def _read_password(*, required: bool) -> str | None:
    """One line of standard input (hidden and confirmed at a terminal); None when it is empty."""
    stream = sys.stdin
    if stream is not None and stream.isatty():
        line = click.prompt("Password (empty: none)" if not required else "Password", hide_input=True,
                            confirmation_prompt=True, default="", show_default=False, err=True)
    else:
        line = (stream.readline() if stream is not None else "").rstrip("\r\n")
    if not line:
        if required:
            raise click.ClickException("No password came on standard input; give it as one line, e.g. "
                                       "`chatedit users set-password NAME < password.txt`.")
        return None
    return line


def _account_json(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "display_name": account.display_name, "email": account.email,
            "role": account.role, "active": account.active, "has_password": account.has_password,
            "created_at": account.created_at.isoformat(),
            "last_sign_in_at": None if account.last_sign_in_at is None else account.last_sign_in_at.isoformat()}


def _run(obj: dict[str, Any], action: Any) -> Any:
    """Run ``action(accounts, actor)`` for the person the command acts for, every refusal one sentence.

    Refused permission exits with code 2 like every door's refusal; a mistake in the request
    (a taken name, an unknown account to change) with code 1.
    """
    with open_services(obj) as services:
        actor = acting_actor(obj, services)
        try:
            return action(Accounts(services), actor)
        except PermissionDenied as exc:
            raise Refused(str(exc)) from None
        except (AccountError, UnknownUser) as exc:
            raise click.ClickException(str(exc)) from None


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def users_list(obj: dict[str, Any], as_json: bool) -> None:
    """Every account, with its role and whether it is active."""
    accounts: list[Account] = _run(obj, lambda acc, actor: acc.list_users(actor))
    if as_json:
        click.echo(json.dumps([_account_json(a) for a in accounts], indent=2))
        return
    click.echo(f"{'ID':>4}  {'NAME':<20} {'ROLE':<9} {'STATE':<8} {'PASSWORD':<8}  DISPLAY NAME / E-MAIL")
    for a in accounts:
        shown = " / ".join(x for x in (a.display_name, a.email or "") if x)
        click.echo(f"{a.id:>4}  {a.name[:20]:<20} {a.role:<9} {'active' if a.active else 'disabled':<8} "
                   f"{'yes' if a.has_password else 'no':<8}  {shown}")


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(USER_ROLES), required=True)
@click.option("--email", default=None, help="E-mail address (unique).")
@click.option("--display-name", default="", help="How pages name the person (default: NAME).")
@click.pass_obj
def users_create(obj: dict[str, Any], name: str, role: str, email: str | None, display_name: str) -> None:
    """Create the account NAME; its password is one line of standard input (none: an account without one)."""
    password = _read_password(required=False)
    account: Account = _run(obj, lambda acc, actor: acc.create_user(
        actor, name, role=role, email=email, display_name=display_name, password=password))
    how = "with a password" if account.has_password else "without a password"
    click.echo(f"Created {account.name} ({account.role}) {how}.")


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(USER_ROLES))
@click.pass_obj
def users_set_role(obj: dict[str, Any], name: str, role: str) -> None:
    """Give NAME the role ROLE."""
    account: Account = _run(obj, lambda acc, actor: acc.set_role(actor, name, role))
    click.echo(f"{account.name} is now {account.role}.")


@users.command("disable")
@click.argument("name")
@click.pass_obj
def users_disable(obj: dict[str, Any], name: str) -> None:
    """Disable NAME: the account may do nothing and its sessions end (its histories stay)."""
    account: Account = _run(obj, lambda acc, actor: acc.disable(actor, name))
    click.echo(f"{account.name} is disabled.")


@users.command("enable")
@click.argument("name")
@click.pass_obj
def users_enable(obj: dict[str, Any], name: str) -> None:
    """Enable NAME again."""
    account: Account = _run(obj, lambda acc, actor: acc.enable(actor, name))
    click.echo(f"{account.name} is enabled.")


@users.command("set-password")
@click.argument("name")
@click.pass_obj
def users_set_password(obj: dict[str, Any], name: str) -> None:
    """Set the password of NAME from one line of standard input; the account's sessions end."""
    password = _read_password(required=True)
    _run(obj, lambda acc, actor: acc.set_password(actor, name, password))
    click.echo(f"The password of {name} is set; its sessions have ended.")


def register(cli: click.Group) -> None:
    """Add the ``users`` group to the ``chatedit`` command."""
    cli.add_command(users)

