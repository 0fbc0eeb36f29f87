"""ImageService: images as users see them — tags, removal rules, prune, import, bootstrap."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Sequence
from typing import BinaryIO

from skiff.engine.containers import ContainerService
from skiff.engine.events import EventBus
from skiff.errors import Conflict, NotFound
from skiff.images.imagestore import ImageStore
from skiff.images.reference import parse_reference
from skiff.types import ImageRecord


class ImageService:
    """Image operations with Docker's semantics and events."""

    def __init__(self, store: ImageStore, containers: ContainerService, events: EventBus) -> None:
        self.store = store
        self.containers = containers
        self.events = events

    def get(self, ref: str) -> ImageRecord:
        return self.store.get(ref)

    def list(self) -> builtins.list[ImageRecord]:
        return self.store.list()

    def _users(self, image_id: str) -> builtins.list[tuple[str, bool]]:
        return [(c.id, c.running) for c in self.containers.list() if c.image_id == image_id]

    def tag(self, ref: str, repo: str, tag: str = "") -> str:
        image = self.store.get(ref)
        target = parse_reference(f"{repo}:{tag}" if tag else repo).familiar()
        self.store.tag(image.id, target)
        self.events.publish("image", "tag", image.id, name=target)
        return target

    def remove(self, ref: str, force: bool = False, prune: bool = True) -> builtins.list[dict[str, str]]:
        """``docker rmi``: untag, and delete the image once no tag and no container holds it."""
        image = self.store.get(ref)
        out: builtins.list[dict[str, str]] = []
        by_tag = not image.id.startswith(ref) and not ref.startswith("sha256:")
        normalized = parse_reference(ref).familiar() if by_tag else ""
        users = self._users(image.id)
        if by_tag and len(image.repo_tags) > 1 and normalized in image.repo_tags:
            self.store.untag(normalized)
            self.events.publish("image", "untag", image.id, name=normalized)
            return [{"Untagged": normalized}]
        if users:
            cid, running = users[0]
            if not force:
                if by_tag:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force) - '
                        f"container {cid[:12]} is using its referenced image {image.id[7:19]}"
                    )
                kind = "running" if running else "stopped"
                raise Conflict(
                    f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                    f"image is being used by {kind} container {cid[:12]}"
                )
            # Forced: drop the tags; the layers stay while the container uses them (as Docker).
            for tag in image.repo_tags:
                self.store.untag(tag)
                self.events.publish("image", "untag", image.id, name=tag)
                out.append({"Untagged": tag})
            return out
        if not force and len(image.repo_tags) > 1 and not by_tag:
            raise Conflict(
                f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                "image is referenced in multiple repositories"
            )
        for tag in image.repo_tags:
            self.store.untag(tag)
            self.events.publish("image", "untag", image.id, name=tag)
            out.append({"Untagged": tag})
        self.store.delete(image.id)
        self.events.publish("image", "delete", image.id)
        out.append({"Deleted": image.id})
        if prune:
            out.extend(self._prune_parents(image.parent))
        return out

    def _children(self, image_id: str) -> bool:
        return any(i.parent == image_id for i in self.store.list())

    def _prune_parents(self, parent_id: str) -> builtins.list[dict[str, str]]:
        """As ``docker rmi``: untagged parents (a build's step images) nothing else uses go too."""
        out: builtins.list[dict[str, str]] = []
        while parent_id:
            try:
                parent = self.store.get(parent_id)
            except NotFound:
                break
            if parent.repo_tags or parent.repo_digests or self._users(parent.id) or self._children(parent.id):
                break
            self.store.delete(parent.id)
            self.events.publish("image", "delete", parent.id)
            out.append({"Deleted": parent.id})
            parent_id = parent.parent
        return out

    def prune(
        self, dangling_only: bool = True, keep: Callable[[ImageRecord], bool] | None = None
    ) -> tuple[builtins.list[dict[str, str]], int]:
        used = {c.image_id for c in self.containers.list()}
        deleted: builtins.list[dict[str, str]] = []
        reclaimed = 0
        images = self.store.list()
        parents = {i.parent for i in images if i.parent}
        for image in images:
            if image.id in used or (dangling_only and image.repo_tags) or (keep and keep(image)):
                continue
            if dangling_only and image.id in parents:
                continue  # a step image under another image: it goes with that image (Docker's heads)
            try:
                deleted.extend(self.remove(image.id, force=True))
                reclaimed += image.size
            except (Conflict, NotFound):
                continue
        self.events.publish("image", "prune", "", reclaimed=str(reclaimed))
        return deleted, reclaimed

    async def import_image(
        self, stream: BinaryIO, *, repo_tag: str | None, changes: Sequence[str], message: str
    ) -> ImageRecord:
        image = await asyncio.to_thread(
            self.store.import_image, stream, changes=changes, message=message, repo_tag=repo_tag
        )
        self.events.publish("image", "import", image.id)
        if repo_tag:
            self.events.publish("image", "tag", image.id, name=parse_reference(repo_tag).familiar())
        return image

    async def bootstrap(self, name: str, tag: str | None) -> ImageRecord:
        from skiff.images import bootstrap

        if name == "busybox":
            image = await asyncio.to_thread(bootstrap.bootstrap_busybox, self.store, tag or "busybox:latest")
        elif name == "debian":
            image = await asyncio.to_thread(bootstrap.bootstrap_debian, self.store, tag or "debian:bookworm")
        else:
            raise NotFound(f"no bootstrap recipe for {name!r}: choose busybox or debian")
        self.events.publish("image", "import", image.id)
        for t in image.repo_tags:
            self.events.publish("image", "tag", image.id, name=t)
        return image
