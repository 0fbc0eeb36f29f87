"""Formatter contexts: what ``{{.ID}}``, ``{{.Status}}``... mean for ps, images and history.

Each row wraps one item of the daemon's JSON list and exposes docker's formatter
field names as properties, so ``--format`` templates written for docker work.
"""

from __future__ import annotations

import json
import time
from typing import Any

from skiff.units import go_time, human_size, parse_rfc3339, since

PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_TABLE_SIZE = PS_TABLE + "\t{{.Size}}"
PS_TITLES = {
    "ID": "CONTAINER ID",
    "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT",
    "LocalVolumes": "LOCAL VOLUMES",
    "Label": "LABEL",
}
IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_TABLE_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_TITLES = {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_TITLES = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedBy": "CREATED BY",
    "CreatedAt": "CREATED AT",
}
_PS_FIELDS = (
    "Command",
    "CreatedAt",
    "ID",
    "Image",
    "Labels",
    "LocalVolumes",
    "Mounts",
    "Names",
    "Networks",
    "Ports",
    "RunningFor",
    "Size",
    "State",
    "Status",
)
_IMAGE_FIELDS = (
    "Containers",
    "CreatedAt",
    "CreatedSince",
    "Digest",
    "ID",
    "Repository",
    "SharedSize",
    "Size",
    "Tag",
    "UniqueSize",
    "VirtualSize",
)


def ellipsis(text: str, width: int) -> str:
    """docker's Ellipsis: cut to ``width`` characters, the last one being "…"."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"


def short_id(ident: str) -> str:
    """The 12-character form of a container or image id."""
    return ident.removeprefix("sha256:")[:12]


def _host_port(ip: str, port: object) -> str:
    """Go's net.JoinHostPort: IPv6 addresses in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def format_ports(ports: list[dict[str, Any]] | None) -> str:
    """docker's DisplayablePorts: ``443/tcp, 0.0.0.0:8080->80/tcp``.

    Runs of consecutive ports collapse into ranges (``8000-8002/tcp``); a port published on the
    same host port joins its run (``0.0.0.0:80->80/tcp``); other mappings come last, in order.
    """

    def order(p: dict[str, Any]) -> tuple[int, str, int, str]:
        return (
            int(p.get("PrivatePort") or 0),
            p.get("IP") or "",
            int(p.get("PublicPort") or 0),
            p.get("Type") or "",
        )

    groups: dict[str, list[int]] = {}  # key -> [first, last], in creation order
    result: list[str] = []
    mappings: list[str] = []

    def form(key: str, first: int, last: int) -> str:
        ip, _, proto = key.rpartition("/")
        text = str(first) if first == last else f"{first}-{last}"
        if ip:
            text = f"{_host_port(ip, text)}->{text}"
        return f"{text}/{proto}"

    for p in sorted(ports or [], key=order):
        private, proto, ip = int(p.get("PrivatePort") or 0), p.get("Type") or "tcp", p.get("IP") or ""
        key = proto
        if ip:
            public = int(p.get("PublicPort") or 0)
            if public != private:
                mappings.append(f"{_host_port(ip, public)}->{private}/{proto}")
                continue
            key = f"{ip}/{proto}"
        group = groups.get(key)
        if group is None:
            groups[key] = [private, private]
        elif private == group[1] + 1:
            group[1] = private
        else:
            result.append(form(key, group[0], group[1]))
            groups[key] = [private, private]
    result.extend(form(key, first, last) for key, (first, last) in groups.items())
    return ", ".join(result + mappings)


def status_text(state: dict[str, Any], now: float | None = None) -> str:
    """docker's State.String(): ``Up 3 seconds (healthy)``, ``Exited (0) 2 minutes ago``, ``Created``."""
    now = time.time() if now is None else now
    status = state.get("Status", "")
    started = parse_rfc3339(state.get("StartedAt", ""))
    finished = parse_rfc3339(state.get("FinishedAt", ""))
    if status in ("running", "paused"):
        text = "Up " + since(started or now, now).removesuffix(" ago")
        if status == "paused":
            return text + " (Paused)"
        health = (state.get("Health") or {}).get("Status", "")
        if health == "starting":
            return text + " (health: starting)"
        return text + (f" ({health})" if health else "")
    if status == "restarting":
        return f"Restarting ({state.get('ExitCode', 0)}) {since(finished or now, now)}"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if status == "created":
        return "Created"
    if finished is None:
        return "Exited"
    return f"Exited ({state.get('ExitCode', 0)}) {since(finished, now)}"


class LabeledRow:
    """A row over an API object's JSON (``raw``) with docker's ``.Labels`` and ``.Label "k"``."""

    raw: dict[str, Any]

    @property
    def Labels(self) -> str:
        labels = self.raw.get("Labels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def Label(self, name: str) -> str:
        """``{{.Label "key"}}``: one label's value."""
        return str((self.raw.get("Labels") or {}).get(name, ""))


class ObjectRow(LabeledRow):
    """Networks and volumes: ``.Name``, ``.Driver``, ``.Scope`` plus labels."""

    @property
    def Name(self) -> str:
        return str(self.raw.get("Name", ""))

    @property
    def Driver(self) -> str:
        return str(self.raw.get("Driver", ""))

    @property
    def Scope(self) -> str:
        return str(self.raw.get("Scope", ""))


class ContainerRow(LabeledRow):
    """One ``GET /containers/json`` item as docker's ps formatter sees it.

    Property names are docker's template field names (``.ID``, ``.RunningFor``), hence CamelCase.
    """

    def __init__(self, raw: dict[str, Any], trunc: bool = True, now: float | None = None) -> None:
        self.raw = raw
        self.trunc = trunc
        self.now = time.time() if now is None else now

    def to_json(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in _PS_FIELDS}

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("Id", ""))
        return short_id(ident) if self.trunc else ident

    @property
    def Image(self) -> str:
        image = str(self.raw.get("Image", ""))
        if self.trunc and image.startswith("sha256:"):
            return short_id(image)
        return image

    @property
    def Command(self) -> str:
        command = str(self.raw.get("Command", ""))
        if self.trunc:
            command = ellipsis(command, 20)
        return json.dumps(command, ensure_ascii=False)

    @property
    def CreatedAt(self) -> str:
        return go_time(float(self.raw.get("Created", 0)))

    @property
    def RunningFor(self) -> str:
        return since(float(self.raw.get("Created", 0)), self.now)

    @property
    def Ports(self) -> str:
        return format_ports(self.raw.get("Ports"))

    @property
    def State(self) -> str:
        return str(self.raw.get("State", ""))

    @property
    def Status(self) -> str:
        return str(self.raw.get("Status", ""))

    @property
    def Size(self) -> str:
        rw = int(self.raw.get("SizeRw") or 0)
        virtual = int(self.raw.get("SizeRootFs") or 0)
        return f"{human_size(rw)} (virtual {human_size(virtual)})"

    @property
    def Names(self) -> str:
        names = [n.removeprefix("/") for n in self.raw.get("Names") or []]
        if self.trunc:
            # Link aliases look like "other/alias"; docker ps shows only the real name.
            names = [n for n in names if "/" not in n][:1] or names[:1]
        return ",".join(names)

    @property
    def Mounts(self) -> str:
        names = [m.get("Name") or m.get("Source", "") for m in self.raw.get("Mounts") or []]
        return ",".join(ellipsis(n, 15) if self.trunc else n for n in names)

    @property
    def LocalVolumes(self) -> str:
        return str(sum(1 for m in self.raw.get("Mounts") or [] if m.get("Driver") == "local"))

    @property
    def Networks(self) -> str:
        nets = (self.raw.get("NetworkSettings") or {}).get("Networks") or {}
        return ",".join(sorted(nets))


class ImageRow:
    """One repository:tag of ``GET /images/json`` as docker's images formatter sees it."""

    def __init__(
        self,
        raw: dict[str, Any],
        repo: str,
        tag: str,
        digest: str,
        trunc: bool = True,
        now: float | None = None,
    ) -> None:
        self.raw = raw
        self.Repository = repo
        self.Tag = tag
        self.Digest = digest
        self.trunc = trunc
        self.now = time.time() if now is None else now

    def to_json(self) -> dict[str, str]:
        return {n: str(getattr(self, n)) for n in _IMAGE_FIELDS}

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("Id", ""))
        return short_id(ident) if self.trunc else ident

    @property
    def CreatedSince(self) -> str:
        return since(float(self.raw.get("Created", 0)), self.now)

    @property
    def CreatedAt(self) -> str:
        return go_time(float(self.raw.get("Created", 0)))

    @property
    def Size(self) -> str:
        return human_size(int(self.raw.get("Size") or 0))

    VirtualSize = Size

    @property
    def SharedSize(self) -> str:
        shared = int(self.raw.get("SharedSize", -1))
        return "N/A" if shared < 0 else human_size(shared)

    @property
    def UniqueSize(self) -> str:
        shared = int(self.raw.get("SharedSize", -1))
        return "N/A" if shared < 0 else human_size(int(self.raw.get("Size") or 0) - shared)

    @property
    def Containers(self) -> str:
        count = int(self.raw.get("Containers", -1))
        return "N/A" if count < 0 else str(count)


def image_rows(
    images: list[dict[str, Any]], trunc: bool = True, all_tags: bool = True, now: float | None = None
) -> list[ImageRow]:
    """One row per repository:tag (``<none>`` for untagged images), newest first, as docker lists them."""
    rows: list[ImageRow] = []
    for img in sorted(images, key=lambda i: -int(i.get("Created", 0))):
        digests = {d.partition("@")[0]: d.partition("@")[2] for d in img.get("RepoDigests") or []}
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        if not tags:
            repo = next(iter(digests), "<none>")
            rows.append(ImageRow(img, repo, "<none>", digests.get(repo, "<none>") or "<none>", trunc, now))
            continue
        for ref in tags:
            repo, _, tag = ref.rpartition(":")
            if "/" in tag:  # "host:5000/repo" without a tag
                repo, tag = ref, "<none>"
            rows.append(ImageRow(img, repo, tag, digests.get(repo, "<none>") or "<none>", trunc, now))
    return rows


class HistoryRow:
    """One ``GET /images/{name}/history`` entry as docker's history formatter sees it."""

    def __init__(
        self, raw: dict[str, Any], trunc: bool = True, human: bool = True, now: float | None = None
    ) -> None:
        self.raw = raw
        self.trunc = trunc
        self.human = human
        self.now = time.time() if now is None else now

    def to_json(self) -> dict[str, str]:
        return {
            n: str(getattr(self, n))
            for n in ("Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size")
        }

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("Id", ""))
        if ident in ("", "<missing>"):
            return "<missing>"
        return short_id(ident) if self.trunc else ident

    @property
    def CreatedSince(self) -> str:
        created = float(self.raw.get("Created", 0))
        return since(created, self.now) if self.human else go_time(created)

    @property
    def CreatedAt(self) -> str:
        return go_time(float(self.raw.get("Created", 0)))

    @property
    def CreatedBy(self) -> str:
        text = str(self.raw.get("CreatedBy", "")).replace("\t", " ")
        return ellipsis(text, 45) if self.trunc else text

    @property
    def Size(self) -> str:
        size = int(self.raw.get("Size") or 0)
        return human_size(size) if self.human else str(size)

    @property
    def Comment(self) -> str:
        return str(self.raw.get("Comment", ""))
