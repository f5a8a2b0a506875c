"""The task registry: `model.task` -> the Task that knows its data, model and scoring (tasks/base.py).

The only module that imports a task (an import-linter contract in pyproject.toml says so). Torch-free: the tasks
import their heavy parts inside the methods that need them, so config checks and `dsf --help` stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dsf_dist.tasks.base import Task

if TYPE_CHECKING:
    import numpy as np

    from dsf_dist.config.schema import DsfConfig, MetricsConfig


def _classification() -> Task:
    from dsf_dist.tasks.classification import ClassificationTask

    return ClassificationTask()


def _regression() -> Task:
    from dsf_dist.tasks.regression import RegressionTask

    return RegressionTask()


def _token_classification() -> Task:
    from dsf_dist.tasks.token_classification import TokenClassificationTask

    return TokenClassificationTask()


def _causal_lm() -> Task:
    from dsf_dist.tasks.causal_lm import CausalLMTask

    return CausalLMTask()


def _sequence_classification() -> Task:
    from dsf_dist.tasks.sequence_classification import SequenceClassificationTask

    return SequenceClassificationTask()


TASKS: dict[str, Callable[[], Task]] = {
    "classification": _classification,
    "regression": _regression,
    "token_classification": _token_classification,
    "causal_lm": _causal_lm,
    "sequence_classification": _sequence_classification,
}
"""Every task by its `model.task` name; config/schema.py's ModelConfig.task lists the same names (a test checks)."""

# A user's own LightningModule replaces the task's model; these tasks' data and scoring need their own model's
# outputs, so with a user module the predictions are scored as plain classification.
BUILT_IN_MODEL_ONLY = {"token_classification": "classification"}


def get_task(name: str) -> Task:
    return TASKS[name]()


def task_for(cfg: DsfConfig) -> Task:
    name = cfg.model.task
    if cfg.model.module and name in BUILT_IN_MODEL_ONLY:
        name = BUILT_IN_MODEL_ONLY[name]
    return get_task(name)


def infer_task(metrics: Iterable[str]) -> Task:
    """The task whose metrics saved results hold (results written before test.json named its task): the one
    sharing most of them, classification on a tie."""
    found = set(metrics)
    tasks = [get_task(name) for name in TASKS]
    return max(tasks, key=lambda task: len(found & set(task.metrics)))


def score(
    preds: np.ndarray, target: np.ndarray, task: str, metrics: MetricsConfig, num_classes: int | None
) -> dict[str, Any]:
    """Score predictions the way `task` scores them (the trained and the existing model alike)."""
    return get_task(task).score(preds, target, metrics, num_classes)
