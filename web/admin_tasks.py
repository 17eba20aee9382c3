"""Admin jobs: trigger a recompute of one event and follow its progress."""

from __future__ import annotations

from aiohttp import web

from shared.errors import NotFound
from shared.jobs import start_recompute, task_view
from web.auth import authenticate_host, hosted_event
from web.jsonio import json_response
from web.keys import DB, SETTINGS, TASKS
from web.params import event_id_param

routes = web.RouteTableDef()


@routes.post("/rest/host/session/analytics/recompute")
async def recompute(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    event_id = event_id_param(request)
    await hosted_event(request, principal, event_id)
    db = request.app[DB]
    task, _ = await start_recompute(db, request.app[TASKS], event_id, request.app[SETTINGS].recompute_stale_s)
    view = task_view(task)
    return json_response(
        {"taskId": view["taskId"], "status": view["state"], "eventId": event_id},
        status=202,
        headers={"Location": f"/rest/host/tasks/{view['taskId']}"},
    )


@routes.get("/rest/host/tasks/{taskId}")
async def task_status(request: web.Request) -> web.Response:
    principal = await authenticate_host(request)
    task_id = request.match_info["taskId"]
    task = await request.app[DB].tasks.find_one({"_id": task_id}) if len(task_id) <= 64 else None
    if task is None:
        raise NotFound(f"no task {task_id[:64]}")
    await hosted_event(request, principal, task["eventId"])
    return json_response(task_view(task))
