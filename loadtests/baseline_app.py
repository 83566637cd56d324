"""The yardstick: a bare Starlette endpoint on the same uvicorn settings as the service.

It decodes the same event body with msgspec and answers an envelope of the same size,
and does nothing else: no checks, no state, no storage, no log line.

    python loadtests/baseline_app.py PORT
"""

from __future__ import annotations

import sys

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Event(msgspec.Struct):
    cid: str
    event_id: str
    transaction_id: str
    pid: str = "organic"


class Data(msgspec.Struct):
    cid: str
    pid: str
    transaction_id: str
    conversion_id: str
    conversion: bool


class Reply(msgspec.Struct):
    status: int
    type: str
    message: str
    data: Data


_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


async def trigger(request: Request) -> Response:
    event = _decoder.decode(await request.body())
    reply = Reply(200, "success", "Event triggered successfully",
                  Data(event.cid, event.pid, event.transaction_id, "", False))
    return Response(_encoder.encode(reply), media_type="application/json")


app = Starlette(routes=[Route("/api/event/trigger", trigger, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                access_log=False, server_header=False, log_level="warning")
