"""The ``eval_planner`` job: score a planner on a thesis-format dataset (``chatedit eval planner``, the admin pages).

Payload (:class:`EvalPlannerPayload`): ``planner`` ("rules", …, or "reference" to score
the dataset's own outputs against the contract), ``dataset`` (the *name* of a registered
dataset, never a path: the worker resolves it with :func:`dataset_path` from its own
settings), optional ``limit``. The result is :class:`finetune.evaluation.EvalReport` as a dict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from jobs.errors import PermanentError
from jobs.registry import Payload

if TYPE_CHECKING:
    from core.settings import Settings
    from finetune.evaluation import Sample
    from jobs.context import JobContext

#: The thesis' dataset, always registered under this name when its file is present.
SEED_DATASET = "seed"
SEED_DATASET_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "seed_chat_dataset.json"
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class EvalPlannerPayload(Payload):
    planner: Literal["rules", "openai", "local", "reference"] = "rules"
    dataset: Annotated[str, Field(pattern=DATASET_NAME_PATTERN)]
    limit: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class UnknownDataset(PermanentError, LookupError):
    """A dataset name this installation has not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"There is no dataset named {name!r}; registered: {', '.join(known) or 'none'} "
                         "(CHATEDIT_EVAL_DATASETS names dataset files).")
        self.name = name
        self.known = known


def registered_datasets(settings: Settings) -> dict[str, Path]:
    """Name → file of every dataset this process may read: the seed dataset, then ``CHATEDIT_EVAL_DATASETS``."""
    datasets = {SEED_DATASET: SEED_DATASET_PATH} if SEED_DATASET_PATH.is_file() else {}
    datasets.update(settings.eval_datasets)
    return datasets


def dataset_path(settings: Settings, name: str) -> Path:
    """The file registered as ``name``; :class:`UnknownDataset` for any other name."""
    datasets = registered_datasets(settings)
    if name not in datasets:
        raise UnknownDataset(name, sorted(datasets))
    return datasets[name]


def evaluate_planner(planner_name: str, path: Path, *, settings: Settings, limit: int | None = None,
                     dataset_name: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The report of ``planner_name`` on the dataset file ``path``: the job's work, and the CLI's on a local file."""
    from core.commands import CommandsNotFound, extract_commands
    from core.planners import PlannerUnavailable, make_planner
    from finetune.evaluation import DatasetError, evaluate, load_dataset

    if not path.is_file():
        raise PermanentError(f"The dataset {dataset_name or path} is not a regular file ({path}).")
    try:
        samples = load_dataset(path, limit=limit)
    except DatasetError as exc:
        raise PermanentError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PermanentError(f"The dataset {dataset_name or path} cannot be read: {exc}.") from None
    if planner_name == "reference":
        def run(sample: Sample) -> tuple[str, list[Any] | None]:
            try:
                return sample.reference, extract_commands(sample.reference)
            except CommandsNotFound:
                return sample.reference, None
    else:
        try:
            planner = make_planner(planner_name, settings)
        except PlannerUnavailable as exc:
            raise PermanentError(str(exc)) from None

        def run(sample: Sample) -> tuple[str, list[Any] | None]:
            result = planner.plan(sample.request, labels=sample.labels)
            return result.reply, result.wire()

    report = evaluate(run, samples, planner_name=planner_name, dataset_name=dataset_name or path.name,
                      progress=progress)
    return report.to_dict()


def handle(ctx: JobContext) -> dict[str, Any]:
    payload = EvalPlannerPayload.of(ctx)
    path = dataset_path(ctx.services.settings, payload.dataset)

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            ctx.progress(done / total, f"{done}/{total} samples")

    return evaluate_planner(payload.planner, path, settings=ctx.services.settings, limit=payload.limit,
                            dataset_name=payload.dataset, progress=progress)
