"""Admin jobs: trigger a recompute of one event and follow its progress."""

from __future__ import annotations

from aiohttp import web

from shared.errors import NotFound
from shared.jobs import start_recompute
from web.auth import authenticate_host, hosted_event
from web.contract.sessions import EventQuery
from web.contract.tasks import RecomputeAccepted, TaskStatus
from web.keys import DB, SETTINGS, TASKS

routes = web.RouteTableDef()


@routes.post("/rest/host/session/analytics/recompute")
async def recompute(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    event_id = EventQuery.parse(request).eventId
    await hosted_event(request, principal, event_id)
    db = request.app[DB]
    task, _ = await start_recompute(db, request.app[TASKS], event_id, request.app[SETTINGS].recompute_stale_s)
    accepted = RecomputeAccepted(taskId=task["_id"], status=task["state"], eventId=event_id)
    return accepted.response(status=202, headers={"Location": f"/rest/host/tasks/{task['_id']}"})


@routes.get("/rest/host/tasks/{taskId}")
async def task_status(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    task_id = request.match_info["taskId"]
    task = await request.app[DB].tasks.find_one({"_id": task_id}) if len(task_id) <= 64 else None
    if task is None:
        raise NotFound(f"no task {task_id[:64]}")
    await hosted_event(request, principal, task["eventId"])
    return TaskStatus.of(task).response()
