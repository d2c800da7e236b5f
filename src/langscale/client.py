"""A Python client for the langscale gateway: :class:`AsyncClient` and :class:`Client`.

::

    from langscale.client import Client

    with Client("http://localhost:8000", api_key="...") as client:
        run = client.submit("chat", {"question": "hi"}, metadata={"user": "u1"})
        done = client.wait(run.run_id)              # long-polls; no busy polling
        print(done.state, done.output)
        for event in client.stream(run.run_id):     # resumes across disconnects
            print(event.type, event.data)
        page = client.list(state=["failed"], metadata={"user": "u1"})
        thread = client.get_thread("c0ffee-42")     # threads: get_thread, thread_history,
        # list_threads / iter_threads, delete_thread

Every call returns the gateway's own types (:class:`~langscale.contract.RunRecord`,
:class:`~langscale.contract.RunAccepted`, :class:`~langscale.contract.RunPage`) and raises
:class:`LangscaleError` (the ``{"error": {"type", "message", ...}}`` body) for an error.
429 and 503 answers are retried, waiting what their ``Retry-After`` says (within
``max_retry_wait`` in all), and so are connection errors: a submit carries an
``Idempotency-Key`` (one per call, made here unless given), so a retried submit never makes a
second run. :meth:`AsyncClient.stream` resumes with ``Last-Event-ID`` after a dropped
connection or a gateway's ``reconnect`` event, so it yields every event once, in order,
up to the ``end``.

:class:`Client` is the same API, blocking: it drives an :class:`AsyncClient` on an event
loop of its own (a thread), so it also works inside a program that runs another loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import httpx
from httpx_sse import aconnect_sse

from langscale.contract import (
    RunAccepted,
    RunPage,
    RunRecord,
    StreamMode,
    ThreadHistory,
    ThreadListItem,
    ThreadPage,
    ThreadView,
)
from langscale.retry_after import parse_retry_after

T = TypeVar("T")

RETRIED_STATUS = frozenset({429, 503})


class LangscaleError(Exception):
    """An error answer of the gateway: its HTTP status, error type, message and details."""

    def __init__(
        self, status: int, type: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.details = dict(details or {})

    @classmethod
    def from_response(cls, response: httpx.Response) -> LangscaleError:
        try:
            error = response.json()["error"]
            details = {k: v for k, v in error.items() if k not in ("type", "message")}
            return cls(response.status_code, str(error["type"]), str(error["message"]), details)
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "http_error", response.text[:500])


class RunFailed(LangscaleError):
    """:meth:`AsyncClient.result`: the run ended failed or cancelled."""

    def __init__(self, record: RunRecord) -> None:
        error = record.error
        super().__init__(
            500,
            error.type if error else record.state.value,
            error.message if error else f"the run ended {record.state.value}",
            {"run_id": record.run_id, "state": record.state.value},
        )
        self.record = record


@dataclass(frozen=True)
class Event:
    """One event of a run's stream (README, Streams): its number, type and decoded data."""

    id: int
    type: str
    data: Any


class AsyncClient:
    """The gateway's API, async. ``url``: the gateway (``http://host:8000``)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retry_wait: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_retry_wait = max_retry_wait
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._headers = headers

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- runs -------------------------------------------------------------------------
    async def submit(
        self,
        pipeline: str,
        input: Any,
        *,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        stream: bool | StreamMode = False,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
        multitask_strategy: str | None = None,
    ) -> RunAccepted:
        """Queue a run (``POST /v1/runs``), in a thread if named (``multitask_strategy``:
        enqueue, reject, interrupt or rollback). Retried safely: the same Idempotency-Key."""
        body: dict[str, Any] = {"pipeline": pipeline, "input": input}
        if config:
            body["config"] = dict(config)
        if metadata:
            body["metadata"] = dict(metadata)
        if stream:
            body["stream"] = stream.value if isinstance(stream, StreamMode) else True
        if webhook:
            body["webhook"] = webhook
        if thread_id is not None:
            body["thread_id"] = thread_id
        if multitask_strategy is not None:
            body["multitask_strategy"] = multitask_strategy
        key = idempotency_key or str(uuid.uuid4())
        response = await self._request(
            "POST", "/v1/runs", json=body, headers={"idempotency-key": key}
        )
        return RunAccepted.model_validate(response.json())

    async def get(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate((await self._request("GET", _run(run_id))).json())

    async def wait(
        self, run_id: str, timeout: float | None = None, poll: float = 30.0
    ) -> RunRecord:
        """The run once it has ended (long-polls ``GET /v1/runs/{id}?wait=``, ``poll``
        seconds a call); with ``timeout``, as it is after that many seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            try:
                response = await self._request(
                    "GET",
                    _run(run_id),
                    params={"wait": f"{max(0.0, left):.3f}"},
                    timeout=max(0.0, left) + self.timeout,
                )
            except LangscaleError as error:
                if error.type != "invalid_wait" or "max_wait" not in error.details:
                    raise
                poll = float(error.details["max_wait"])  # this gateway's longest long-poll
                continue
            record = RunRecord.model_validate(response.json())
            if record.state.is_final or (deadline is not None and time.monotonic() >= deadline):
                return record

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """The run's output once it succeeded; :class:`RunFailed` if it failed or was
        cancelled, TimeoutError if it had not ended within ``timeout``."""
        record = await self.wait(run_id, timeout)
        if not record.state.is_final:
            raise TimeoutError(f"run {run_id} is still {record.state.value}")
        if record.state.value != "succeeded":
            raise RunFailed(record)
        return record.output

    async def run(self, pipeline: str, input: Any, **options: Any) -> RunRecord:
        """Submit a run and wait for its end."""
        accepted = await self.submit(pipeline, input, **options)
        return await self.wait(accepted.run_id)

    async def batch(self, pipeline: str, inputs: Sequence[Any], **options: Any) -> list[RunRecord]:
        """One run per input, all submitted, then each waited for; in the inputs' order."""
        accepted = [await self.submit(pipeline, value, **options) for value in inputs]
        return list(await asyncio.gather(*(self.wait(a.run_id) for a in accepted)))

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel a queued or running run (409 ``run_already_finished`` if it ended)."""
        response = await self._request("POST", f"{_run(run_id)}/cancel")
        return RunRecord.model_validate(response.json())

    async def delete(self, run_id: str) -> None:
        """Forget an ended run now: its result, stream and listing entries (a thread run's
        turns in its thread's history too)."""
        await self._request("DELETE", _run(run_id))

    async def list(
        self,
        *,
        state: Sequence[str] = (),
        pipeline: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        tenant: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunPage:
        """One page of runs, newest first (``GET /v1/runs``)."""
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("state", s) for s in state]
        for key, value in (metadata or {}).items():
            text = value if isinstance(value, str) else json.dumps(value)
            params.append(("metadata", f"{key}={text}"))
        optional = {
            "pipeline": pipeline,
            "created_after": created_after,
            "created_before": created_before,
            "tenant": tenant,
            "cursor": cursor,
        }
        params += [(name, str(value)) for name, value in optional.items() if value is not None]
        response = await self._request("GET", "/v1/runs", params=params)
        return RunPage.model_validate(response.json())

    async def iter_runs(self, **filters: Any) -> AsyncIterator[RunRecord]:
        """Every run the filters of :meth:`list` match, page after page."""

        async def page(cursor: str | None) -> tuple[list[RunRecord], str | None]:
            runs = await self.list(cursor=cursor, **filters)
            return runs.runs, runs.next_cursor

        async for record in _every(page):
            yield record

    async def get_thread(self, thread_id: str) -> ThreadView:
        """A thread's state, its runs not ended and its latest runs (404 unknown)."""
        response = await self._request("GET", _thread(thread_id))
        return ThreadView.model_validate(response.json())

    async def thread_history(self, thread_id: str) -> ThreadHistory:
        """A thread's chat messages, oldest first, each with the run that wrote it."""
        response = await self._request("GET", f"{_thread(thread_id)}/history")
        return ThreadHistory.model_validate(response.json())

    async def list_threads(self, *, cursor: str | None = None, limit: int = 50) -> ThreadPage:
        """One page of the caller's threads, newest created first (``GET /v1/threads``)."""
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await self._request("GET", "/v1/threads", params=params)
        return ThreadPage.model_validate(response.json())

    async def iter_threads(self, *, limit: int = 50) -> AsyncIterator[ThreadListItem]:
        """Every thread of the caller, page after page."""

        async def page(cursor: str | None) -> tuple[list[ThreadListItem], str | None]:
            threads = await self.list_threads(cursor=cursor, limit=limit)
            return threads.threads, threads.next_cursor

        async for thread in _every(page):
            yield thread

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's history, log and state (409 ``thread_busy`` while it has a run
        that has not ended; its runs stay)."""
        await self._request("DELETE", _thread(thread_id))

    async def stream(self, run_id: str, after: int = 0) -> AsyncIterator[Event]:
        """A run's events after event ``after``, up to its ``end`` (or a ``gap`` then
        ``end``), each once: a dropped connection or a gateway's ``reconnect`` event is
        resumed with ``Last-Event-ID`` (backing off, within ``max_retry_wait`` of silence)."""
        last = after
        quiet_since = time.monotonic()
        failures = 0
        while True:
            headers = {**self._headers, "last-event-id": str(last)}
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    f"{self.url}{_run(run_id)}/stream",
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=None),
                ) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        error = LangscaleError.from_response(source.response)
                        if source.response.status_code not in RETRIED_STATUS:
                            raise error
                        raise _Retry(error, _retry_after(source.response))
                    received = 0
                    async for sse in source.aiter_sse():
                        if sse.event == "reconnect":
                            break  # the gateway is going: resume elsewhere
                        data = json.loads(sse.data) if sse.data else None
                        if sse.id:
                            last = int(sse.id)
                        quiet_since, failures, received = time.monotonic(), 0, received + 1
                        yield Event(last, sse.event, data)
                        if sse.event == "end":
                            return
                    else:
                        # Closed with nothing after our position: ended (and read to its
                        # end) or expired (404 raised here); else try again.
                        if not received and (await self.get(run_id)).state.is_final:
                            return
                wait = 0.0 if received else 0.5
            except (httpx.TransportError, _Retry) as problem:
                failures += 1
                wait = problem.wait if isinstance(problem, _Retry) and problem.wait else 0.0
                wait = wait or min(5.0, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                if time.monotonic() + wait - quiet_since > self.max_retry_wait:
                    if isinstance(problem, _Retry):
                        raise problem.error from None
                    raise
            await asyncio.sleep(wait)

    # --- plumbing -----------------------------------------------------------------------
    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        started = time.monotonic()
        failures = 0
        while True:
            try:
                response = await self._http.request(
                    method, f"{self.url}{path}", headers=headers, **kwargs
                )
            except httpx.TransportError:
                failures += 1
                wait = min(5.0, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                if time.monotonic() + wait - started > self.max_retry_wait:
                    raise
                await asyncio.sleep(wait)
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRIED_STATUS:
                failures += 1
                wait = _retry_after(response) or min(5.0, 0.1 * 2**failures)
                if time.monotonic() + wait - started <= self.max_retry_wait:
                    await asyncio.sleep(wait)
                    continue
            raise LangscaleError.from_response(response)


class _Retry(Exception):
    def __init__(self, error: LangscaleError, wait: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    return parse_retry_after(value) if value is not None else None


async def _every(
    page: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
) -> AsyncIterator[T]:
    """Every item of a paginated listing: ``page(cursor)`` gives a page and the next cursor."""
    cursor = None
    while True:
        items, cursor = await page(cursor)
        for item in items:
            yield item
        if cursor is None:
            return


def _run(run_id: str) -> str:
    return f"/v1/runs/{run_id}"


def _thread(thread_id: str) -> str:
    return f"/v1/threads/{thread_id}"


class Client:
    """The gateway's API, blocking: each method runs :class:`AsyncClient`'s on a private
    event loop thread. Use it as a context manager, or call :meth:`close`."""

    def __init__(self, url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="langscale-client", daemon=True
        )
        self._thread.start()
        self._async = self._call(_make_async(url, options))

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(self, pipeline: str, input: Any, **options: Any) -> RunAccepted:
        return self._call(self._async.submit(pipeline, input, **options))

    def get(self, run_id: str) -> RunRecord:
        return self._call(self._async.get(run_id))

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 30.0) -> RunRecord:
        return self._call(self._async.wait(run_id, timeout, poll))

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        return self._call(self._async.result(run_id, timeout))

    def run(self, pipeline: str, input: Any, **options: Any) -> RunRecord:
        return self._call(self._async.run(pipeline, input, **options))

    def batch(self, pipeline: str, inputs: Sequence[Any], **options: Any) -> list[RunRecord]:
        return self._call(self._async.batch(pipeline, inputs, **options))

    def cancel(self, run_id: str) -> RunRecord:
        return self._call(self._async.cancel(run_id))

    def delete(self, run_id: str) -> None:
        self._call(self._async.delete(run_id))

    def list(self, **filters: Any) -> RunPage:
        return self._call(self._async.list(**filters))

    def iter_runs(self, **filters: Any) -> Iterator[RunRecord]:
        return self._iterate(self._async.iter_runs(**filters))

    def get_thread(self, thread_id: str) -> ThreadView:
        return self._call(self._async.get_thread(thread_id))

    def thread_history(self, thread_id: str) -> ThreadHistory:
        return self._call(self._async.thread_history(thread_id))

    def list_threads(self, *, cursor: str | None = None, limit: int = 50) -> ThreadPage:
        return self._call(self._async.list_threads(cursor=cursor, limit=limit))

    def iter_threads(self, *, limit: int = 50) -> Iterator[ThreadListItem]:
        return self._iterate(self._async.iter_threads(limit=limit))

    def delete_thread(self, thread_id: str) -> None:
        self._call(self._async.delete_thread(thread_id))

    def stream(self, run_id: str, after: int = 0) -> Iterator[Event]:
        return self._iterate(self._async.stream(run_id, after))

    def _iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._call(source.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            self._call(source.aclose())  # type: ignore[attr-defined]


async def _make_async(url: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(url, **options)
