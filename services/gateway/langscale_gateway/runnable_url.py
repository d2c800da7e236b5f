"""LangServe's RemoteRunnable given a URL with a query string (``…/chat?timeout=10``)
appends its method after the query: it calls ``/chat?timeout=10/invoke``. Route such a
request to ``/chat/invoke?timeout=10``, as its user meant. (Its streams resolve the method
against the URL's path instead and reach ``/stream`` at the root, where the pipeline is
lost: routes.langserve answers those with a 404 that says why.)"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

# What RemoteRunnable appends to its base URL (httpx's base_url), not urljoin()s.
APPENDED_METHODS = frozenset({b"invoke", b"batch"})


class QueryBeforeMethod:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query, slash, method = scope.get("query_string", b"").rpartition(b"/")
            if slash and method in APPENDED_METHODS:
                path = f"{scope['path'].rstrip('/')}/{method.decode()}"
                raw_path = scope.get("raw_path") or scope["path"].encode()
                scope = {
                    **scope,
                    "path": path,
                    "raw_path": raw_path.rstrip(b"/") + b"/" + method,
                    "query_string": query,
                }
        await self.app(scope, receive, send)
