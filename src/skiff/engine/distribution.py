"""DistributionService: pull, push, login and registry look-ups, with Docker's events and statuses.

The registry protocol is in :mod:`skiff.registry`; this layer parses what the API hands over,
runs a pull or push as a task whose progress is read as an async iterator (the API writes it
as JSON lines), publishes the ``pull``/``push`` events, and adds the closing status lines.
If the reader goes away (the client hung up), the operation is cancelled, as dockerd does;
its partial downloads stay for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from skiff.engine.events import EventBus
from skiff.errors import InvalidArgument, Unauthorized
from skiff.images.imagestore import ImageStore
from skiff.images.reference import DEFAULT_DOMAIN, LEGACY_DOMAIN, Reference, parse_reference
from skiff.registry import media
from skiff.registry.auth import AuthConfig
from skiff.registry.client import RegistryError
from skiff.registry.client_events import Platform, Progress, PushedTag, parse_platform
from skiff.registry.client_pull import (
    Puller,
    config_platform,
    list_tags,
    manifest_platforms,
    translate_pull_error,
)
from skiff.registry.client_push import Pusher, images_to_push
from skiff.registry.client_session import Registries
from skiff.types import ImageRecord

log = logging.getLogger("skiff.distribution")

Event = Progress | PushedTag


@dataclass(frozen=True)
class PullSpec:
    """What ``POST /images/create?fromImage=&tag=`` asks for: one reference, or every tag (``all_tags``)."""

    ref: Reference
    all_tags: bool = False
    platform: Platform | None = None


def pull_spec(from_image: str, tag: str, platform: str = "") -> PullSpec:
    """dockerd's reading of ``fromImage`` and ``tag``: a digest in ``tag`` is a digest; no tag at all
    (in either) means every tag of the repository."""
    if not from_image:
        raise InvalidArgument("invalid reference format: fromImage is empty")
    plat = parse_platform(platform) if platform else None
    if tag:
        base = parse_reference(from_image, default_tag=False)
        if base.tag or base.digest:
            base = Reference(base.domain, base.path, None, None)
        text = f"{base.canonical()}@{tag}" if tag.startswith("sha256:") else f"{base.canonical()}:{tag}"
        return PullSpec(parse_reference(text), False, plat)
    ref = parse_reference(from_image, default_tag=False)
    if ref.tag is None and ref.digest is None:
        return PullSpec(ref, True, plat)
    return PullSpec(ref, False, plat)


def push_spec(name: str, tag: str) -> Reference:
    """``POST /images/{name}/push?tag=``: a tag in either place, none meaning every tag."""
    ref = parse_reference(name, default_tag=False)
    if tag:
        if tag.startswith("sha256:"):
            raise InvalidArgument("cannot push a digest reference")
        ref = ref.with_tag(tag)
    return ref


def login_domain(server_address: str) -> str:
    """The registry a login is for (dockerd's ConvertToHostname; Docker Hub's names are docker.io)."""
    text = server_address.strip() or "docker.io"
    host = urlsplit(text).netloc if "://" in text else text.split("/", 1)[0]
    if host in ("", DEFAULT_DOMAIN, LEGACY_DOMAIN, "registry-1.docker.io"):
        return DEFAULT_DOMAIN
    return host


class DistributionService:
    """See the module docstring."""

    def __init__(self, store: ImageStore, events: EventBus, registries: Registries, spool_dir: Path) -> None:
        self.store = store
        self.events = events
        self.registries = registries
        self.spool_dir = spool_dir

    async def _run(
        self, work: Callable[[Callable[[Event], None]], Coroutine[Any, Any, None]]
    ) -> AsyncIterator[Event]:
        """Run ``work(emit)`` as a task; yield what it emits; raise its error at the end.

        Stopping the iteration early (the client went away) cancels the work and waits for it.
        """
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(work(queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                yield item
            task.result()  # raises the work's error
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def pull(self, spec: PullSpec, auth: AuthConfig) -> AsyncGenerator[Event, None]:
        """``docker pull``: progress, then ``Digest:`` and ``Status:`` lines; errors raise."""

        async def work(emit: Callable[[Event], None]) -> None:
            puller = Puller(self.registries, self.store, emit)
            refs = [spec.ref]
            if spec.all_tags:
                tags = await list_tags(self.registries, spec.ref, auth)
                if not tags:
                    raise translate_pull_error(
                        RegistryError("manifest unknown: no tags", code="MANIFEST_UNKNOWN"), spec.ref
                    )
                refs = [spec.ref.with_tag(t) for t in tags]
            updated = False
            for ref in refs:
                result = await puller.pull(ref, auth, spec.platform)
                updated = updated or result.updated
                self.events.publish("image", "pull", ref.familiar(), name=ref.familiar())
            shown = spec.ref.name() if spec.all_tags else spec.ref.familiar()
            if updated:
                emit(Progress(f"Status: Downloaded newer image for {shown}"))
            else:
                emit(Progress(f"Status: Image is up to date for {shown}"))

        async for event in self._run(work):
            yield event

    async def pull_for_build(self, name: str, auths: dict[str, AuthConfig], out: Any) -> ImageRecord:
        """A base image a build needs and does not have: pulled as ``docker build`` does, the
        progress as the build's text (``out.stdout``), credentials from X-Registry-Config."""
        spec = pull_spec(name, "")
        if spec.all_tags:
            spec = PullSpec(spec.ref.with_tag("latest"), False, None)
        domain = spec.ref.domain
        auth = auths.get(domain) or next(
            (a for key, a in auths.items() if login_domain(key) == domain), AuthConfig()
        )
        async for event in self.pull(spec, auth):
            if isinstance(event, Progress) and not event.layer:
                await out.stdout(f"{event.id + ': ' if event.id else ''}{event.status}\n")
        return self.store.get(name)

    async def push(self, ref: Reference, auth: AuthConfig) -> AsyncGenerator[Event, None]:
        """``docker push``: checks the local images first (NotFound before any output), then pushes."""
        images = images_to_push(self.store, ref)

        async def work(emit: Callable[[Event], None]) -> None:
            pusher = Pusher(self.registries, self.store, emit, self.spool_dir)
            emit(Progress(f"The push refers to repository [{ref.repository()}]"))
            client = await pusher.connect(ref, auth)
            for tag, image in images:
                await pusher.push_tag(client, ref, tag, image)
                tagged = ref.with_tag(tag).familiar()
                self.events.publish("image", "push", tagged, name=tagged)

        async for event in self._run(work):
            yield event

    async def login(self, auth: AuthConfig) -> str:
        """``POST /auth``: check the credentials against the registry; returns an identity token or ""."""
        domain = login_domain(auth.server_address)
        endpoint = self.registries.resolver.push_endpoint(domain)
        client = await self.registries.connect(endpoint, auth)
        url = client.endpoint.url("/v2/")
        failed = Unauthorized(f"login attempt to {url} failed with status: 401 Unauthorized")
        if client.challenge is None:
            return ""
        if auth.anonymous:
            raise failed
        identity = ""
        try:
            if client.challenge.scheme == "bearer" and not auth.registry_token:
                token = await client.fetch_token(
                    client.challenge.realm, client.challenge.params.get("service", ""), (), offline=True
                )
                identity = token.refresh_token
            async with client.request("GET", "/v2/", ()) as resp:
                if resp.status == 401:
                    raise failed
                if resp.status != 200:
                    raise InvalidArgument(
                        f"login attempt to {url} failed with status: {resp.status} {resp.reason}"
                    )
        except RegistryError as e:
            if e.registry_status == 401 or e.code == "UNAUTHORIZED":
                raise Unauthorized(f"{failed.message}: {e.message}") from None
            raise
        return identity

    async def inspect(self, name: str, auth: AuthConfig) -> dict[str, Any]:
        """``GET /distribution/{name}/json``: the manifest's descriptor and platforms."""
        ref = parse_reference(name)
        puller = Puller(self.registries, self.store, lambda _e: None)
        client, top = await puller.resolve(ref, auth)
        platforms = manifest_platforms(top.data, top.media_type)
        if top.media_type in media.IMAGE_MANIFESTS:
            from skiff.images.archive import parse_oci_manifest

            doc = parse_oci_manifest(top.data)
            try:
                config = await client.get_blob(ref.path, doc.config.digest)
            except RegistryError as e:
                raise translate_pull_error(e, ref) from None
            platforms = [config_platform(config)]
        return {
            "Descriptor": {"mediaType": top.media_type, "digest": top.digest, "size": len(top.data)},
            "Platforms": platforms,
        }

    def recover(self) -> None:
        images = self.store.list()
        self.registries.recover({i.id for i in images}, {d for i in images for d in i.diff_ids})

    async def close(self) -> None:
        await self.registries.close()
