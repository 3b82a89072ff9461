"""Datasets at the service door: named datasets with immutable versions of request → commands rows.

Every change makes a new version (an import or a generation adds to the newest version's rows,
an edit or a deletion copies the rest, a split draws train/val/test), so an evaluation run or a
fine-tuning run that names ``NAME@3`` always means the same rows. Long work (import, generation,
harvest) runs as batch jobs; their handlers (``jobs.handlers.datasets``) call
:func:`create_version` here. Everything needs ``datasets.manage``.
"""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from db.models import Dataset, DatasetRowRecord, DatasetVersion, User
from finetune.dataset_rows import DatasetRow
from jobs.services import Services
from jobs.services.accounts import record_audit
from jobs.services.permissions import Actor, require

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SPEC = re.compile(r"^(?P<name>[^@]+)(?:@(?P<number>\d+))?$")
#: Rows written per INSERT statement.
_CHUNK = 1000


class DatasetError(ValueError):
    """A dataset request that cannot be done; the message is a sentence, the data in attributes."""

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.data = data


class DatasetNotFound(DatasetError, LookupError):
    def __init__(self, name: str, number: int | None = None) -> None:
        what = f"dataset {name!r}" if number is None else f"version {number} of dataset {name!r}"
        super().__init__(f"There is no {what}.", name=name, number=number)


@dataclass(frozen=True)
class VersionRecord:
    dataset: str
    id: int
    number: int
    parent_number: int | None
    note: str
    row_count: int
    aside_count: int
    split_seed: int | None
    split_counts: dict[str, int]
    job_id: int | None
    stats: dict[str, Any]
    created_by: str
    created_at: datetime

    @property
    def spec(self) -> str:
        """``NAME@N``: how pages, the CLI, evaluation and training name it."""
        return f"{self.dataset}@{self.number}"


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    created_at: datetime
    versions: list[VersionRecord] = field(default_factory=list)

    @property
    def latest(self) -> VersionRecord | None:
        return self.versions[-1] if self.versions else None


@dataclass(frozen=True)
class StoredRow:
    """A row as stored in a version: its id and position there, whether it is kept aside, and the row."""

    id: int
    position: int
    aside: bool
    row: DatasetRow


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise DatasetError(f"A dataset name is 1 to 64 letters, digits, '.', '_' or '-' (starting with a letter or "
                           f"digit), not {name!r}.", name=name)
    return name


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` → (name, number or None for the newest)."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise DatasetError(f"Name a dataset as NAME or NAME@VERSION, not {spec!r}.", spec=spec)
    number = match.group("number")
    return check_name(match.group("name")), None if number is None else int(number)


# ---------------------------------------------------------------------- reading


def list_datasets(services: Services, actor: Actor) -> list[DatasetSummary]:
    """Every dataset with its versions, oldest version first; datasets by name."""
    require(actor, "datasets.manage")
    with services.database.session() as session:
        datasets = session.exec(select(Dataset).order_by(col(Dataset.name))).all()
        # Only versions of the datasets just read: one made in between (a job finishing) waits for the next look.
        versions = session.exec(select(DatasetVersion)
                                .where(col(DatasetVersion.dataset_id).in_([d.id for d in datasets]))
                                .order_by(col(DatasetVersion.dataset_id), col(DatasetVersion.number))).all()
        names = _user_names(session)
        splits = _split_counts(session, [v.id for v in versions if v.split_seed is not None])
        numbers = {v.id: v.number for v in versions}
        by_dataset: dict[int, list[VersionRecord]] = {}
        for v in versions:
            by_dataset.setdefault(v.dataset_id, []).append(_version(v, _name_of(datasets, v.dataset_id), names,
                                                                    splits.get(v.id, {}), numbers))
        return [DatasetSummary(name=d.name, created_at=d.created_at, versions=by_dataset.get(d.id or 0, []))
                for d in datasets]


def get_version(services: Services, actor: Actor, name: str, number: int | None = None) -> VersionRecord:
    """A version (the newest when ``number`` is None); :class:`DatasetNotFound` when there is none."""
    require(actor, "datasets.manage")
    with services.database.session() as session:
        row = _version_row(session, name, number)
        splits = _split_counts(session, [row.id] if row.split_seed is not None else [])
        parent = session.get(DatasetVersion, row.parent_id) if row.parent_id is not None else None
        numbers = {} if parent is None else {parent.id: parent.number}
        return _version(row, name, _user_names(session), splits.get(row.id, {}), numbers)


def version_rows(services: Services, actor: Actor, name: str, number: int | None = None) -> list[StoredRow]:
    """Every row of a version in order, kept-aside ones included (a version is immutable: cache freely by id)."""
    require(actor, "datasets.manage")
    with services.database.session() as session:
        version = _version_row(session, name, number)
        rows = session.exec(select(DatasetRowRecord).where(DatasetRowRecord.version_id == version.id)
                            .order_by(col(DatasetRowRecord.position))).all()
        return [StoredRow(id=r.id or 0, position=r.position, aside=r.aside, row=_row(r)) for r in rows]


def usable_rows(services: Services, actor: Actor, name: str, number: int | None = None) -> list[DatasetRow]:
    """The rows training, evaluation and exports use: every row not kept aside."""
    return [s.row for s in version_rows(services, actor, name, number) if not s.aside]


# ---------------------------------------------------------------------- writing


def create_version(services: Services, actor: Actor, name: str, rows: Sequence[DatasetRow], *, note: str,
                   parent: int | None = None, aside: Iterable[bool] | None = None, job_id: int | None = None,
                   split_seed: int | None = None, stats: dict[str, Any] | None = None) -> VersionRecord:
    """A new version of ``name`` (the dataset is made when new) holding ``rows``; ``aside`` flags per row
    (default: a row that failed a check is kept aside). ``parent``: the version number it was made from."""
    require(actor, "datasets.manage")
    name = check_name(name)
    flags = list(aside) if aside is not None else [not r.passed for r in rows]
    if len(flags) != len(rows):
        raise ValueError("one aside flag per row")
    with services.database.write_session() as session:
        dataset = session.exec(select(Dataset).where(Dataset.name == name).with_for_update()).first()
        if dataset is None:
            dataset = Dataset(name=name, created_by=actor.id)
            session.add(dataset)
            session.flush()
        assert dataset.id is not None
        newest = session.exec(select(func.max(DatasetVersion.number))
                              .where(DatasetVersion.dataset_id == dataset.id)).one() or 0
        parent_id = None
        if parent is not None:
            parent_id = _version_row(session, name, parent).id
        version = DatasetVersion(dataset_id=dataset.id, number=newest + 1, parent_id=parent_id,
                                 note=note[:500], row_count=len(rows), aside_count=sum(flags), split_seed=split_seed,
                                 job_id=job_id, stats=dict(stats or {}), created_by=actor.id)
        session.add(version)
        session.flush()
        assert version.id is not None
        table = DatasetRowRecord.__table__  # type: ignore[attr-defined]
        values = [_values(version.id, i, r, flag) for i, (r, flag) in enumerate(zip(rows, flags, strict=True))]
        for start in range(0, len(values), _CHUNK):
            session.execute(sa.insert(table), values[start:start + _CHUNK])
        record_audit(session, actor.id, "dataset.version", "dataset", name,
                     {"version": version.number, "rows": len(rows), "note": note[:200]})
        splits = _split_counts(session, [version.id]).get(version.id, {}) if split_seed is not None else {}
        return _version(version, name, _user_names(session), splits, {} if parent is None else {parent_id: parent})


def extend(services: Services, actor: Actor, name: str, rows: Sequence[DatasetRow], *, note: str,
           job_id: int | None = None, stats: dict[str, Any] | None = None, split_seed: int | None = None,
           fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> VersionRecord:
    """A new version of ``name``: the newest version's rows, then ``rows`` (a first version when ``name`` is new).

    Importing or generating into an existing name adds to it. With ``split_seed`` the usable rows of the new
    version are drawn into train/val/test (stratified, no request in two splits), so it can be evaluated at once.
    """
    try:
        base: VersionRecord | None = get_version(services, actor, name)
    except DatasetNotFound:
        base = None
    old = [] if base is None else version_rows(services, actor, name, base.number)
    combined = [s.row for s in old] + list(rows)
    aside = [s.aside for s in old] + [not r.passed for r in rows]
    if split_seed is not None:
        from finetune.cleaning import split_rows

        usable = split_rows([r for r, a in zip(combined, aside, strict=True) if not a], seed=split_seed,
                            fractions=fractions)
        combined = usable + [r for r, a in zip(combined, aside, strict=True) if a]
        aside = [False] * len(usable) + [True] * (len(combined) - len(usable))
        note += f"; split with seed {split_seed}"
    return create_version(services, actor, name, combined, note=note, parent=None if base is None else base.number,
                          aside=aside, job_id=job_id, stats=stats, split_seed=split_seed)


def edit_row(services: Services, actor: Actor, name: str, number: int, row_id: int, row: DatasetRow) -> VersionRecord:
    """A new version in which row ``row_id`` is ``row`` (checked again; kept aside if a check fails)."""
    from finetune.dataset_checks import check_row

    stored = version_rows(services, actor, name, number)
    if row_id not in {s.id for s in stored}:
        raise DatasetError(f"Version {number} of {name} has no row {row_id}.", row_id=row_id)
    checked = check_row(row)
    rows = [checked if s.id == row_id else s.row for s in stored]
    aside = [(not checked.passed) if s.id == row_id else s.aside for s in stored]
    position = next(s.position for s in stored if s.id == row_id)
    return create_version(services, actor, name, rows, note=f"Edited row {position + 1} of version {number}",
                          parent=number, aside=aside)


def delete_rows(services: Services, actor: Actor, name: str, number: int, row_ids: Iterable[int]) -> VersionRecord:
    """A new version without these rows."""
    gone = set(row_ids)
    stored = version_rows(services, actor, name, number)
    missing = gone - {s.id for s in stored}
    if missing:
        raise DatasetError(f"Version {number} of {name} has no rows {sorted(missing)}.", row_ids=sorted(missing))
    kept = [s for s in stored if s.id not in gone]
    return create_version(services, actor, name, [s.row for s in kept], aside=[s.aside for s in kept], parent=number,
                          note=f"Deleted {len(gone)} row{'s' if len(gone) != 1 else ''} of version {number}")


def keep_rows(services: Services, actor: Actor, name: str, number: int, row_ids: Iterable[int]) -> VersionRecord:
    """A new version in which these kept-aside rows are used after all (the admin overrules their failed checks)."""
    keep = set(row_ids)
    stored = version_rows(services, actor, name, number)
    return create_version(services, actor, name, [s.row for s in stored],
                          aside=[s.aside and s.id not in keep for s in stored], parent=number,
                          note=f"Kept {len(keep)} row{'s' if len(keep) != 1 else ''} set aside in version {number}")


def merge(services: Services, actor: Actor, name: str, sources: Sequence[str], *, seed: int = 0,
          fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), dedupe: bool = True) -> VersionRecord:
    """A new version of ``name`` from the usable rows of ``sources`` (``NAME[@N]`` each), deduplicated and split."""
    from finetune.cleaning import dedupe as remove_duplicates
    from finetune.cleaning import split_rows

    rows: list[DatasetRow] = []
    for spec in sources:
        source, number = parse_spec(spec)
        rows += usable_rows(services, actor, source, number)
    removed = 0
    if dedupe:
        rows, dropped = remove_duplicates(rows)
        removed = len(dropped)
    rows = split_rows(rows, seed=seed, fractions=fractions)
    parent = _newest_number(services, name)
    return create_version(services, actor, name, rows, note=f"Merged {', '.join(sources)}"
                          + (f"; {removed} near-duplicate{'s' if removed != 1 else ''} removed" if removed else "")
                          + f"; split with seed {seed}", parent=parent, split_seed=seed,
                          stats={"duplicates_removed": removed, "sources": list(sources)})


def split(services: Services, actor: Actor, name: str, number: int | None = None, *, seed: int = 0,
          fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> VersionRecord:
    """A new version with the same usable rows drawn into train/val/test (stratified, no request in two splits)."""
    from finetune.cleaning import split_rows

    version = get_version(services, actor, name, number)
    stored = version_rows(services, actor, name, version.number)
    usable = split_rows([s.row for s in stored if not s.aside], seed=seed, fractions=fractions)
    aside = [s.row for s in stored if s.aside]
    return create_version(services, actor, name, usable + aside, aside=[False] * len(usable) + [True] * len(aside),
                          parent=version.number, split_seed=seed,
                          note=f"Split version {version.number} with seed {seed} "
                               f"({', '.join(f'{f:.0%}' for f in fractions)})")


def export(services: Services, actor: Actor, name: str, number: int | None, fmt: str, directory: Path) -> list[Path]:
    """Write the version's usable rows in ``fmt`` (alpaca, sharegpt, openai) with ``dataset_info.json``."""
    from finetune.dataset_formats import write_export

    version = get_version(services, actor, name, number)
    rows = usable_rows(services, actor, name, version.number)
    return write_export(rows, directory, fmt, f"{name}_v{version.number}")


def export_zip(services: Services, actor: Actor, name: str, number: int | None, fmt: str) -> bytes:
    """The same export as one zip file (what the page's Download button hands over)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = export(services, actor, name, number, fmt, Path(tmp))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, path.relative_to(tmp))
        return buffer.getvalue()


# ---------------------------------------------------------------------- jobs


def submit_import(services: Services, actor: Actor, data: bytes, *, file_name: str, fmt: str, name: str | None = None,
                  keep_invalid: bool = False) -> int:
    """Queue a ``dataset_import`` job for an uploaded file (stored as a blob: a job never names a file)."""
    require(actor, "datasets.manage")
    name = check_name(name or Path(file_name).stem)
    key = services.blobs.put(data)
    payload = {"name": name, "format": fmt, "blob_key": key, "file_name": Path(file_name).name[:200],
               "keep_invalid": keep_invalid}
    return services.queue.enqueue("dataset_import", payload, lane="batch", owner_id=actor.id, max_attempts=1)


def submit_generate(services: Services, actor: Actor, name: str, *, templates: int = 0, llm: int = 0, seed: int = 0,
                    languages: Sequence[str] = ("en", "zh"), llm_mode: str = "paraphrase") -> int:
    """Queue a ``dataset_generate`` job: template rows, and LLM rows written from or paraphrasing more template rows."""
    require(actor, "datasets.manage")
    payload = {"name": check_name(name), "templates": templates, "llm": llm, "seed": seed,
               "languages": list(languages), "llm_mode": llm_mode}
    return services.queue.enqueue("dataset_generate", payload, lane="batch", owner_id=actor.id, max_attempts=1)


def submit_harvest(services: Services, actor: Actor, name: str) -> int:
    """Queue a ``dataset_harvest`` job: the steps approved in review become rows."""
    require(actor, "datasets.manage")
    return services.queue.enqueue("dataset_harvest", {"name": check_name(name)}, lane="batch", owner_id=actor.id,
                                  max_attempts=1)


# ---------------------------------------------------------------------- internals


def _newest_number(services: Services, name: str) -> int | None:
    with services.database.session() as session:
        dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            return None
        return session.exec(select(func.max(DatasetVersion.number))
                            .where(DatasetVersion.dataset_id == dataset.id)).one()


def _version_row(session: Session, name: str, number: int | None) -> DatasetVersion:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise DatasetNotFound(name)
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    query = query.order_by(col(DatasetVersion.number).desc()) if number is None else \
        query.where(DatasetVersion.number == number)
    version = session.exec(query).first()
    if version is None:
        raise DatasetNotFound(name, number)
    return version


def _split_counts(session: Session, version_ids: list[int]) -> dict[int, dict[str, int]]:
    if not version_ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for version_id, split_name, n in session.exec(
            select(DatasetRowRecord.version_id, DatasetRowRecord.split, func.count())
            .where(col(DatasetRowRecord.version_id).in_(version_ids), col(DatasetRowRecord.split).is_not(None),
                   DatasetRowRecord.aside == sa.false())
            .group_by(col(DatasetRowRecord.version_id), col(DatasetRowRecord.split))).all():
        counts.setdefault(int(version_id), {})[str(split_name)] = int(n)
    return counts


def _user_names(session: Session) -> dict[int, str]:
    return {int(i): (d or n) for i, n, d in session.exec(select(User.id, User.name, User.display_name)).all()}


def _name_of(datasets: Sequence[Dataset], dataset_id: int) -> str:
    return next(d.name for d in datasets if d.id == dataset_id)


def _version(v: DatasetVersion, name: str, names: dict[int, str], splits: dict[str, int],
             numbers: dict[Any, Any]) -> VersionRecord:
    assert v.id is not None
    return VersionRecord(dataset=name, id=v.id, number=v.number,
                         parent_number=None if v.parent_id is None else numbers.get(v.parent_id),
                         note=v.note, row_count=v.row_count, aside_count=v.aside_count, split_seed=v.split_seed,
                         split_counts=splits, job_id=v.job_id, stats=dict(v.stats or {}),
                         created_by=names.get(v.created_by, "?"), created_at=v.created_at)


def _values(version_id: int, position: int, row: DatasetRow, aside: bool) -> dict[str, Any]:
    data = row.to_dict()
    return {"version_id": version_id, "position": position, "request": data["request"],
            "language": data["language"], "labels": data["labels"], "conversation": data["conversation"],
            "commands": data["commands"], "source": data["source"], "origin": data["origin"],
            "seed": data["seed"], "checks": data["checks"], "split": data["split"], "aside": aside}


def _row(r: DatasetRowRecord) -> DatasetRow:
    return DatasetRow.from_dict({"request": r.request, "language": r.language, "labels": r.labels,
                                 "conversation": r.conversation, "commands": r.commands, "source": r.source,
                                 "origin": r.origin, "seed": r.seed, "checks": r.checks, "split": r.split})
