"""What every handler shares: the store (behind one database thread), uploads, and auth."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

from skiff.registry.server.auth import Access, Authorizer, Grant, TokenService
from skiff.registry.server.grammar import check_name
from skiff.registry.server.storage import RegistryStore
from skiff.registry.server.uploads import Uploads

T = TypeVar("T")


class Registry:
    """The server's state. Store calls run on one worker thread: SQLite may wait on a lock
    (``registry gc`` in another process holds the write lock while it sweeps), and a commit
    fsyncs; neither may stall the event loop.
    """

    def __init__(
        self,
        store: RegistryStore,
        uploads: Uploads,
        authorizer: Authorizer,
        tokens: TokenService | None = None,
    ) -> None:
        self.store = store
        self.uploads = uploads
        self.authorizer = authorizer
        self.tokens = tokens
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-db")

    async def db(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` (a store method) on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()


REGISTRY_KEY = web.AppKey("registry", Registry)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY_KEY]


def realm_base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def authorize(request: web.Request, needed: Sequence[Access]) -> Grant:
    """The caller's grant if it covers ``needed``; raises UNAUTHORIZED (with a challenge) if not."""
    reg = registry_of(request)
    return await reg.authorizer.authorize(request.headers.get("Authorization"), realm_base(request), needed)


def repo_name(request: web.Request) -> str:
    return check_name(request.match_info["name"])
