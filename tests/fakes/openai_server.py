"""A small OpenAI-compatible server for tests of the ``openai`` provider.

Speaks the real protocol (``/v1/chat/completions`` with and without ``stream``,
``/v1/embeddings``). ``POST /control`` sets injected faults: a latency, and a number of
upcoming requests to answer with a given status (429 with ``Retry-After``, or 5xx).
``GET /control`` returns what it received: each request with its time (``at``) and the
status it was answered with. ``"headers"`` in ``POST /control`` adds response headers to
every successful answer (e.g. ``x-ratelimit-remaining-requests``).

Run: ``python tests/fakes/openai_server.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI()
state: dict[str, Any] = {
    "latency": 0.0,
    "fail_next": 0,
    "fail_status": 429,
    "retry_after": 1,
    "requests": [],
    "headers": {},
}


def reply_text(messages: list[dict[str, Any]]) -> str:
    content = messages[-1]["content"] if messages else ""
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content)
    return f"openai-fake says: {content}"


async def _fault(entry: dict[str, Any]) -> JSONResponse | None:
    await asyncio.sleep(state["latency"])
    entry["status"] = 200
    if state["fail_next"] > 0:
        state["fail_next"] -= 1
        status = state["fail_status"]
        headers = {"retry-after": str(state["retry_after"])} if status == 429 else {}
        body = {"error": {"message": "injected failure", "type": "fake", "code": status}}
        entry["status"] = status
        return JSONResponse(body, status_code=status, headers=headers)
    return None


@app.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    body = await request.json()
    entry = {"path": "chat", "model": body.get("model"), "at": time.time()}
    state["requests"].append(entry)
    fault = await _fault(entry)
    if fault:
        return fault
    text = reply_text(body.get("messages", []))
    usage = {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 0}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    created = int(time.time())
    if body.get("stream"):

        async def events() -> AsyncIterator[str]:
            words = text.split(" ")
            for index, word in enumerate(words):
                delta = {"content": word if index == 0 else " " + word}
                if index == 0:
                    delta["role"] = "assistant"
                chunk = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            final = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": usage,
            }
            yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=state["headers"])
    return JSONResponse(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": created,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        },
        headers=state["headers"],
    )


@app.post("/v1/embeddings", response_model=None)
async def embeddings(request: Request) -> JSONResponse:
    body = await request.json()
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    state["requests"].append({"path": "embeddings", "model": body.get("model"), "n": len(texts)})
    fault = await _fault({})
    if fault:
        return fault
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(str(t))), 1.0, 0.0]}
        for i, t in enumerate(texts)
    ]
    return JSONResponse(
        {"object": "list", "data": data, "model": body.get("model"), "usage": {}},
        headers=state["headers"],
    )


@app.post("/control")
async def control(request: Request) -> dict[str, Any]:
    state.update(await request.json())
    return {"ok": True}


@app.get("/control")
async def report() -> dict[str, Any]:
    return state


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
