"""Admin tasks: a recompute started, and a task's progress."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.documents import TaskDoc
from shared.jobs import FAILURE, PENDING, STARTED, SUCCESS
from web.contract.common import Answer, Count, Id, UtcTime

TaskState = Literal[PENDING, STARTED, SUCCESS, FAILURE]  # type: ignore[valid-type]


class RecomputeAccepted(Answer):
    """The recompute of the event: a new one, or the one already running."""

    taskId: Id
    status: Literal[PENDING, STARTED]  # type: ignore[valid-type]
    eventId: Id


class Progress(Answer):
    """Progress in steps: the duration sync, then one per session."""

    done: Count = Field(description="Steps done.")
    total: Count = Field(description="Steps in all; 0 until started.")


class TaskResult(Answer):
    """What a finished recompute did."""

    sessions: Count = Field(description="Sessions rolled up.")
    durations: dict[str, Any] = Field(description="What the duration sync did.")


class TaskStatus(Answer):
    """An admin task and its progress; `result` only when SUCCESS, `error` only when FAILURE."""

    taskId: Id
    eventId: Id
    kind: Literal["recompute"]
    state: TaskState
    status: TaskState = Field(description="The same as state.")
    progress: Progress
    createdAt: UtcTime | None
    updatedAt: UtcTime | None = Field(description="When the task last reported.")
    result: TaskResult | None = None
    error: str | None = None

    @classmethod
    def of(cls, task: TaskDoc) -> TaskStatus:
        extra: dict[str, Any] = {}
        if task["state"] == SUCCESS:
            extra["result"] = task.get("result")
        if task["state"] == FAILURE:
            extra["error"] = task.get("error")
        return cls(
            taskId=task["_id"],
            eventId=task["eventId"],
            kind=task.get("kind", "recompute"),
            state=task["state"],
            status=task["state"],
            progress=Progress(done=task["progress"]["done"], total=task["progress"]["total"]),
            createdAt=task.get("createdAt"),
            updatedAt=task.get("heartbeatAt"),
            **extra,
        )
