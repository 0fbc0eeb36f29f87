"""Layer downloads: resumable, verified, shared, and readable while they are still arriving.

A layer blob is fetched into ``<downloads>/<hex>.partial``. The extractor does not wait for the
end: it reads the file as it grows (:class:`FollowReader`), so download and extraction overlap,
and the blob is written once (to the page cache; the file is deleted after extraction, usually
before it ever reaches the disk). The reader sees end-of-file only after the whole blob is there
and its size and sha256 match the descriptor, so a layer is never committed from bytes that
were not verified.

For an uncompressed layer (its blob digest is its diff_id) the download does not hash at all:
the extraction computes the diff_id anyway, and a layer that does not match is removed again
before any image names it. That saves hashing every byte twice.

An interrupted download (connection lost, pull cancelled, skiffd killed) leaves the partial file;
the next attempt hashes what is there and asks for the rest with ``Range: bytes=N-``. A
registry that ignores the Range (200 instead of 206) is read from the start and the bytes
already held are skipped. A digest mismatch deletes the partial file and fails the pull
(dockerd's rule: no retry for a fresh download that does not verify).

Two pulls that need the same blob at once share one download (and its file).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

from skiff.errors import InvalidArgument
from skiff.registry.client import RegistryClient, RegistryError, transport_error

log = logging.getLogger("skiff.registry")

_MAX_FAILURES = 5  # attempts in a row that make no progress before the download gives up
_STALE_SECONDS = 24 * 3600  # partial downloads older than this are dropped at startup
_READ_CHUNK = 1 << 20


class DownloadCancelled(Exception):
    """The pull that needed this download went away."""


ProgressFn = Callable[[int, int], None]  # (bytes so far, total)
StatusFn = Callable[[str], None]


@dataclass
class LayerDownload:
    """One blob arriving in ``path``; thread-safe for readers (see :class:`FollowReader`)."""

    digest: str
    size: int
    path: Path
    written: int = 0
    done: bool = False
    error: BaseException | None = None
    users: int = 0
    consumed: bool = False
    # False when the reader verifies the bytes itself (an uncompressed layer: its digest is the
    # diff_id the extraction computes anyway), which saves hashing every byte twice.
    check_digest: bool = True
    progress: list[ProgressFn] = field(default_factory=list)
    status: list[StatusFn] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def _advance(self, n: int) -> None:
        with self._cond:
            self.written += n
            self._cond.notify_all()

    def _finish(self, error: BaseException | None) -> None:
        with self._cond:
            self.error = error
            self.done = True
            self._cond.notify_all()

    def wait_done(self) -> None:
        with self._cond:
            while not self.done:
                self._cond.wait()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self.done:
                self._cond.wait(timeout)

    async def finished(self) -> None:
        """Wait for the download to end (successfully or not); raises its error."""
        assert self.task is not None
        await asyncio.shield(self.task)
        if self.error is not None:
            raise self.error

    def _notify_status(self, text: str) -> None:
        for fn in list(self.status):
            fn(text)


class FollowReader:
    """A blocking reader of a :class:`LayerDownload` for the extraction thread.

    Returns bytes as soon as they are in the file; at the end of the file it waits for more,
    and returns EOF only once the download is complete (and verified, if it checks digests). A failed download raises
    its error; ``cancel`` set raises :class:`DownloadCancelled`.
    """

    def __init__(
        self, download: LayerDownload, cancel: threading.Event, on_read: ProgressFn | None = None
    ) -> None:
        self._dl = download
        self._cancel = cancel
        self._on_read = on_read
        try:
            self._file = open(download.path, "rb")
        except FileNotFoundError:
            download.wait_done()
            if download.error is not None:
                raise download.error from None  # a failed download removed its file
            raise
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        want = n if n > 0 else _READ_CHUNK
        while True:
            if self._cancel.is_set():
                raise DownloadCancelled("the pull was cancelled")
            data = self._file.read(want)
            if data:
                self.position += len(data)
                if self._on_read is not None:
                    self._on_read(self.position, self._dl.size)
                return data
            if self._dl.error is not None:
                raise self._dl.error
            if self._dl.done and self.position >= self._dl.written:
                return b""
            self._dl.wait(0.5)  # woken by every write; the timeout only lets a cancel be seen

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FollowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GunzipReader:
    """A gzip stream decompressed in large steps (``gzip.GzipFile`` reads 8 KiB at a time, which
    costs more than the inflating itself on big layers). Concatenated members are followed and
    zero padding after a member is skipped, as ``gzip`` does; zlib checks each member's CRC and
    length. Not gzip (no magic): the bytes pass through unchanged.
    """

    def __init__(self, raw: FollowReader, chunk: int = _READ_CHUNK) -> None:
        self._raw = raw
        self._chunk = chunk
        head = raw.read(2)
        self._gzip = head == b"\x1f\x8b"
        self._pending = head
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._between = False  # a member ended: only padding or another member may follow
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        if not self._gzip:
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            return self._raw.read(n)
        while not self._eof:
            if self._z.unconsumed_tail and not self._between:  # (at a member's end both hold the rest)
                data = self._decompress(self._z.unconsumed_tail)
            else:
                raw = self._pending or self._raw.read(self._chunk)
                self._pending = b""
                if not raw:
                    if not self._between:
                        raise InvalidArgument("invalid layer: the gzip stream ends early")
                    self._eof = True
                    break
                if self._between:
                    raw = raw.lstrip(b"\0")
                    if not raw:
                        continue
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self._between = False
                data = self._decompress(raw)
            if self._z.eof:
                self._between = True
                self._pending = self._z.unused_data
            if data:
                return data
        return b""

    def _decompress(self, raw: bytes) -> bytes:
        try:
            return self._z.decompress(raw, self._chunk)
        except zlib.error as e:
            raise InvalidArgument(f"invalid layer: gzip: {e}") from None


class DownloadManager:
    """Resumable layer downloads under ``root``, shared by concurrent pulls."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._active: dict[str, LayerDownload] = {}

    def recover(self) -> int:
        """Startup: drop partial downloads no pull has touched for a day (others stay for resume)."""
        removed = 0
        now = time.time()
        for entry in self.root.iterdir():
            try:
                stale = now - entry.stat().st_mtime > _STALE_SECONDS
            except OSError:
                continue
            if stale or not entry.name.endswith(".partial"):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed += 1
        return removed

    def path(self, digest: str) -> Path:
        return self.root / (digest.split(":", 1)[1] + ".partial")

    def start(
        self, client: RegistryClient, repo_path: str, digest: str, size: int, check_digest: bool = True
    ) -> LayerDownload:
        """The download of ``digest`` (joining one in flight); call :meth:`release` when done with it.

        ``check_digest=False``: the caller verifies the content (see ``LayerDownload.check_digest``).
        """
        dl = self._active.get(digest)
        if dl is None or (dl.done and dl.error is not None):
            dl = LayerDownload(digest, size, self.path(digest), check_digest=check_digest)
            # The file exists before anyone can try to read it (readers start at once).
            os.close(os.open(dl.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._active[digest] = dl
            dl.task = asyncio.get_running_loop().create_task(self._run(client, repo_path, dl))
        dl.users += 1
        return dl

    def release(self, dl: LayerDownload, consumed: bool) -> None:
        """One user is done; ``consumed``: its layer is extracted. The last user's release
        deletes a consumed file (or cancels a download nobody needs; its file stays for resume)."""
        dl.users -= 1
        dl.consumed = dl.consumed or consumed
        if dl.users > 0:
            return
        if self._active.get(dl.digest) is dl:
            del self._active[dl.digest]
        if dl.task is not None and not dl.task.done():
            dl.task.cancel()
        if dl.consumed:
            with contextlib.suppress(OSError):
                dl.path.unlink()

    async def _run(self, client: RegistryClient, repo_path: str, dl: LayerDownload) -> None:
        error: BaseException | None = None
        try:
            await _fetch(client, repo_path, dl)
        except asyncio.CancelledError:
            error = DownloadCancelled("the pull was cancelled")
        except Exception as e:
            error = e
        dl._finish(error)


class _NoHash:
    """Stands in for sha256 when the reader verifies the content itself."""

    def update(self, data: bytes) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _hash_existing(path: Path, size_limit: int) -> tuple[hashlib._Hash, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while n < size_limit and (chunk := f.read(min(_READ_CHUNK, size_limit - n))):
            h.update(chunk)
            n += len(chunk)
    return h, n


async def _fetch(client: RegistryClient, repo_path: str, dl: LayerDownload) -> None:
    dl.path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dl.path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        have = os.fstat(fd).st_size
        if have > dl.size:
            os.ftruncate(fd, 0)
            have = 0
        h: _Hasher = hashlib.sha256() if dl.check_digest else _NoHash()
        if have and dl.check_digest:
            h, have = await asyncio.to_thread(_hash_existing, dl.path, have)
        os.lseek(fd, have, os.SEEK_SET)
        os.ftruncate(fd, have)
        resumed = have > 0
        dl._advance(have)
        failures = 0
        while have < dl.size:
            before = have
            try:
                await _fetch_from(client, repo_path, dl, fd, h)
            except RegistryError as e:
                have = dl.written
                if not e.unreachable and e.registry_status not in (408, 429, 500, 502, 503, 504):
                    raise  # the registry said no (404 blob unknown, 401...): retrying will not help
                if have > before:
                    failures = 0
                failures += 1
                if failures >= _MAX_FAILURES:
                    raise
                delay = min(2 ** (failures - 1), 10)
                log.info(
                    "download of %s interrupted at %d/%d bytes (%s); retrying", dl.digest, have, dl.size, e
                )
                for left in range(delay, 0, -1):
                    dl._notify_status(f"Retrying in {left} second{'s' if left > 1 else ''}")
                    await asyncio.sleep(1)
                continue
            have = dl.written
        dl._notify_status("Verifying Checksum")
        if have != dl.size or (dl.check_digest and "sha256:" + h.hexdigest() != dl.digest):
            os.close(fd)
            fd = -1
            with contextlib.suppress(OSError):
                dl.path.unlink()
            how = " (resumed download; it will start over next time)" if resumed else ""
            raise RegistryError(
                f"filesystem layer verification failed for digest {dl.digest}{how}", code="DIGEST_INVALID"
            )
    finally:
        if fd >= 0:
            os.close(fd)


async def _fetch_from(client: RegistryClient, repo_path: str, dl: LayerDownload, fd: int, h: _Hasher) -> None:
    """One GET from ``dl.written`` on (which it advances). Transport errors become RegistryError."""
    have = dl.written
    url = f"/v2/{repo_path}/blobs/{dl.digest}"
    step = max(512 << 10, dl.size // 100)
    reported = have
    async with client.open_blob(repo_path, dl.digest, have) as resp:
        skip = 0
        if resp.status == 200 and have:
            skip = have  # Range ignored: the body starts at 0; drop what we already hold
        elif resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                raise RegistryError(
                    f"the registry answered a Range request for {url} from byte {start}, not {have}"
                )
        try:
            async for chunk in resp.content.iter_any():
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                if have + len(chunk) > dl.size:
                    raise RegistryError(
                        f"the registry sent more than the {dl.size} bytes of blob {dl.digest}",
                        code="SIZE_INVALID",
                    )
                os.write(fd, chunk)
                h.update(chunk)
                have += len(chunk)
                dl._advance(len(chunk))
                if have - reported >= step or have == dl.size:
                    reported = have
                    for fn in list(dl.progress):
                        fn(have, dl.size)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            if isinstance(e, OSError) and e.errno is not None and not isinstance(e, ConnectionError):
                raise  # a local disk error, not the network
            raise transport_error("GET", str(resp.url), e) from None
    if have < dl.size:
        raise transport_error("GET", str(client.endpoint.url(url)), ConnectionError("unexpected EOF"))


def _content_range_start(value: str) -> int:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1
