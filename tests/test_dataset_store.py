"""Datasets at the service door: immutable versions, edits that make new versions, who may touch them."""

from __future__ import annotations

import pytest

from finetune.dataset_rows import DatasetRow
from jobs.services import Services, datasets
from jobs.services.permissions import PermissionDenied
from tests.team_support import Team, make_team

BRIGHTER = ({"command": "adjust", "paras": ["brightness", 0.3, []]},)
RED_SHIRT = ({"command": "recolor", "paras": [["Upper-clothes"], "red"]},)


def _row(request: str, commands=BRIGHTER, *, language: str = "en", checks=None) -> DatasetRow:  # type: ignore[no-untyped-def]
    return DatasetRow(request=request, language=language, labels=("Background", "Upper-clothes"),
                      commands=commands, source="template", checks=checks or {"contract": True})


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def test_a_version_keeps_its_rows_in_order_and_later_changes_make_new_versions(services: Services, team: Team) -> None:
    admin = team.admin
    first = datasets.create_version(services, admin, "starter", [_row("make it brighter"), _row("red shirt", RED_SHIRT)],
                                    note="by hand")
    assert (first.spec, first.row_count, first.aside_count) == ("starter@1", 2, 0)
    second = datasets.extend(services, admin, "starter", [_row("把衬衫变红", RED_SHIRT, language="zh")], note="more")
    assert (second.number, second.parent_number, second.row_count) == (2, 1, 3)
    stored = datasets.version_rows(services, admin, "starter", 2)
    assert [s.row.request for s in stored] == ["make it brighter", "red shirt", "把衬衫变红"]
    assert [s.position for s in stored] == [0, 1, 2]
    # Version 1 is unchanged by what came after it.
    assert [s.row.request for s in datasets.version_rows(services, admin, "starter", 1)] == ["make it brighter",
                                                                                             "red shirt"]
    third = datasets.delete_rows(services, admin, "starter", 2, [stored[1].id])
    assert [r.request for r in datasets.usable_rows(services, admin, "starter")] == ["make it brighter", "把衬衫变红"]
    assert third.note == "Deleted 1 row of version 2" and third.parent_number == 2
    assert datasets.get_version(services, admin, "starter").number == 3


def test_a_row_that_failed_a_check_is_set_aside_until_an_admin_keeps_it(services: Services, team: Team) -> None:
    bad = _row("make the tail blue", checks={"labels": "Tail is not a part any segmenter produces"})
    version = datasets.create_version(services, team.admin, "mixed", [_row("make it brighter"), bad], note="x")
    assert version.aside_count == 1
    assert [r.request for r in datasets.usable_rows(services, team.admin, "mixed")] == ["make it brighter"]
    stored = datasets.version_rows(services, team.admin, "mixed")
    kept = datasets.keep_rows(services, team.admin, "mixed", version.number, [stored[1].id])
    assert kept.aside_count == 0 and len(datasets.usable_rows(services, team.admin, "mixed")) == 2


def test_rows_round_trip_through_the_database(services: Services, team: Team) -> None:
    row = DatasetRow(request="and now the hair", language="en", labels=("Hair", "Face"),
                     commands=({"command": "recolor", "paras": [["Hair"], "blue"]},),
                     conversation=(("make the face brighter", '[{"command": "adjust"}]'),), source="llm",
                     origin="gpt-4o-mini", seed=7, checks={"contract": True, "round_trip": True}, split="val")
    datasets.create_version(services, team.admin, "exact", [row], note="one")
    [stored] = datasets.version_rows(services, team.admin, "exact")
    assert stored.row == row


def test_names_and_specs_are_checked(services: Services, team: Team) -> None:
    assert datasets.parse_spec("seed@3") == ("seed", 3)
    assert datasets.parse_spec("seed") == ("seed", None)
    for bad in ("../etc", "", "a b", "x" * 65):
        with pytest.raises(datasets.DatasetError):
            datasets.parse_spec(bad)
    with pytest.raises(datasets.DatasetNotFound, match="There is no version 9 of dataset 'nope'|There is no dataset"):
        datasets.get_version(services, team.admin, "nope", 9)


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_only_admins_manage_datasets(services: Services, team: Team, role: str) -> None:
    datasets.create_version(services, team.admin, "private-data", [_row("make it brighter")], note="x")
    actor = team.by_role()[role]
    for attempt in (lambda: datasets.list_datasets(services, actor),
                    lambda: datasets.version_rows(services, actor, "private-data"),
                    lambda: datasets.create_version(services, actor, "mine", [_row("x")], note="x"),
                    lambda: datasets.submit_generate(services, actor, "mine", templates=10),
                    lambda: datasets.submit_import(services, actor, b"[]", file_name="a.json", fmt="alpaca")):
        with pytest.raises(PermissionDenied, match="may not manage datasets"):
            attempt()


def test_the_listing_counts_rows_versions_and_splits(services: Services, team: Team) -> None:
    rows = [_row(f"make it brighter {i}") for i in range(3)]
    rows = [DatasetRow(**{**r.__dict__, "split": s}) for r, s in zip(rows, ("train", "train", "test"), strict=True)]
    made = datasets.create_version(services, team.admin, "counted", rows, note="split by hand", split_seed=5)
    assert made.split_counts == {"train": 2, "test": 1}
    [summary] = datasets.list_datasets(services, team.admin)
    assert summary.name == "counted" and summary.latest is not None
    assert summary.latest.split_counts == {"train": 2, "test": 1}
    assert summary.latest.created_by == "Ada"
