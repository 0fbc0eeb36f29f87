"""Docker's mount grammar, resolved into a container's mount points (dockerd's rules, Linux).

``plan_mounts`` applies dockerd's order: mount points copied by ``--volumes-from``, then
``Binds`` (``-v``), then ``Mounts`` (``--mount``) -- a destination given twice by the last
two is an error, while either replaces a ``--volumes-from`` one -- and finally an anonymous
volume for each image ``VOLUME`` (and ``-v /path``) nothing else mounts. Volumes are only
*named* here (``""`` for one still to be created); the engine creates them.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from skiff.errors import InvalidArgument, NotFound
from skiff.types import HostConfig, Mount
from skiff.types.volume import MountPoint

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PROPAGATION = "rprivate"
# dockerd shows a local volume given by -v or --mount without a mode as mode "z".
LOCAL_DEFAULT_MODE = "z"
_MODE_GROUPS = (
    ("rw", "ro"),
    ("z", "Z"),  # SELinux relabelling: accepted, nothing to do without SELinux
    PROPAGATIONS,
    ("nocopy",),
    ("consistent", "cached", "delegated"),  # Docker Desktop's; accepted and ignored on Linux
)


@dataclass(frozen=True)
class MountRequest:
    """A mount point to give the container, and how to create its volume if it has none yet."""

    point: MountPoint
    driver: str = "local"
    volume_options: dict[str, str] | None = None
    volume_labels: dict[str, str] | None = None


def valid_mode(mode: str) -> bool:
    """moby's ``linuxValidMountMode``: comma-separated, at most one of each kind."""
    if not mode:
        return True
    counts = [0] * len(_MODE_GROUPS)
    for opt in mode.split(","):
        group = next((i for i, g in enumerate(_MODE_GROUPS) if opt in g), None)
        if group is None:
            return False
        counts[group] += 1
    return all(n <= 1 for n in counts)


def _mode_options(mode: str) -> list[str]:
    return mode.split(",") if mode else []


def clean_destination(path: str, kind: str) -> str:
    """An absolute, clean container path (not ``/``), or Docker's error for ``kind`` mounts."""
    if not path.startswith("/"):
        raise InvalidArgument(
            f"invalid mount config for type \"{kind}\": invalid mount path: '{path}' mount path must be absolute"
        )
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if cleaned == "/":
        raise InvalidArgument(
            f"invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
        )
    return cleaned


def parse_bind(raw: str) -> MountRequest:
    """One ``Binds`` entry (``-v``): ``/dst``, ``src:/dst`` or ``src:/dst:mode``.

    An absolute ``src`` is a host path (bind), anything else a volume name.
    """
    parts = raw.split(":")
    if not raw or any(not p for p in parts) or len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    mode = ""
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):
            raise InvalidArgument(f"invalid volume specification: '{raw}'")  # "/foo:rw"
        source, target = parts
    else:
        source, target, mode = parts
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    opts = _mode_options(mode)
    propagation = next((o for o in opts if o in PROPAGATIONS), "")
    rw = "ro" not in opts
    if source.startswith("/"):
        if "nocopy" in opts:
            raise InvalidArgument(
                'invalid mount config for type "bind": field VolumeOptions must not be specified'
            )
        point = MountPoint(
            type="bind",
            destination=clean_destination(target, "bind"),
            source=posixpath.normpath(source),
            mode=mode,
            rw=rw,
            propagation=propagation or DEFAULT_PROPAGATION,
            create_source=True,
        )
        return MountRequest(point, driver="")
    if propagation:
        raise InvalidArgument(
            'invalid mount config for type "volume": field BindOptions must not be specified'
        )
    point = MountPoint(
        type="volume",
        destination=clean_destination(target, "volume"),
        name=source,
        mode=mode or LOCAL_DEFAULT_MODE,
        rw=rw,
        anonymous=not source,
        copy_data="nocopy" not in opts,
    )
    return MountRequest(point)


def _tmpfs_options(options: Sequence[str]) -> tuple[str, ...]:
    return tuple(o for o in options if o.startswith(("size=", "mode=")))


def parse_mount(m: Mount) -> MountRequest:
    """One ``Mounts`` entry (``--mount``), checked as dockerd's ``validateMountConfig`` does."""
    kind = m.type or "volume"
    if kind == "bind":
        if not m.source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
        if not m.source.startswith("/"):
            raise InvalidArgument(
                f"invalid mount config for type \"bind\": invalid mount path: '{m.source}' mount path must be absolute"
            )
        target = clean_destination(m.target, "bind")
        if not os.path.exists(m.source):
            raise InvalidArgument(
                f'invalid mount config for type "bind": bind source path does not exist: {m.source}'
            )
        propagation = next((o for o in m.options if o in PROPAGATIONS), DEFAULT_PROPAGATION)
        point = MountPoint(
            type="bind",
            destination=target,
            source=posixpath.normpath(m.source),
            rw=not m.read_only,
            propagation=propagation,
        )
        return MountRequest(point, driver="")
    if kind == "volume":
        if m.source.startswith("/"):
            raise InvalidArgument(
                f"invalid mount config for type \"volume\": invalid volume name: '{m.source}'"
                " (a host path needs type=bind)"
            )
        point = MountPoint(
            type="volume",
            destination=clean_destination(m.target, "volume"),
            name=m.source,
            mode=LOCAL_DEFAULT_MODE,
            rw=not m.read_only,
            anonymous=not m.source,
            copy_data="nocopy" not in m.options,
        )
        return MountRequest(
            point,
            driver=m.volume_driver or "local",
            volume_options=dict(m.volume_options) or None,
            volume_labels=dict(m.volume_labels) or None,
        )
    if kind == "tmpfs":
        if m.source:
            raise InvalidArgument('invalid mount config for type "tmpfs": field Source must not be specified')
        point = MountPoint(
            type="tmpfs",
            destination=clean_destination(m.target, "tmpfs"),
            rw=not m.read_only,
            tmpfs_options=_tmpfs_options(m.options),
        )
        return MountRequest(point, driver="")
    raise InvalidArgument(f'invalid mount config: mount type unknown: "{kind}"')


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``container[:ro|rw]`` -> (container, mode)."""
    if not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    ref, _, mode = spec.partition(":")
    if not mode:
        return ref, "rw"
    if not valid_mode(mode) or any(o in PROPAGATIONS for o in mode.split(",")):
        raise InvalidArgument(f"invalid mode: {mode}")
    return ref, mode


def inherit(points: Sequence[MountPoint], mode: str) -> list[MountPoint]:
    """The mount points ``--volumes-from x:mode`` copies: read-only if either side says so, no copy-up."""
    read_write = "ro" not in mode.split(",")
    return [replace(p, rw=p.rw and read_write, mode="", copy_data=False, create_source=False) for p in points]


def plan_mounts(
    host: HostConfig,
    config_volumes: Sequence[str],
    volumes_of: Callable[[str], Sequence[MountPoint]],
) -> list[MountRequest]:
    """Every mount point of a new container, in destination order; see the module docstring.

    ``volumes_of(container)`` returns another container's mount points (NotFound if none).
    """
    planned: dict[str, MountRequest] = {}
    for spec in host.volumes_from:
        ref, mode = parse_volumes_from(spec)
        try:
            theirs = volumes_of(ref)
        except KeyError:  # a name reserved by a container still being created
            raise NotFound(f"No such container: {ref}") from None
        for point in inherit(theirs, mode):
            planned[point.destination] = MountRequest(point, driver=point.driver)
    given: set[str] = set()
    tmpfs_targets = {clean_destination(t, "tmpfs") for t in host.tmpfs}
    for raw in host.binds:
        req = parse_bind(raw)
        dest = req.point.destination
        if dest in given or dest in tmpfs_targets:
            raise InvalidArgument(f"Duplicate mount point: {dest}")
        given.add(dest)
        planned[dest] = req
    for m in host.mounts:
        req = parse_mount(m)
        dest = req.point.destination
        if dest in given:
            raise InvalidArgument(f"Duplicate mount point: {dest}")
        given.add(dest)
        planned[dest] = req
    for path in config_volumes:
        dest = clean_destination(path, "volume")
        if dest in planned or dest in tmpfs_targets:
            continue
        planned[dest] = MountRequest(
            MountPoint(type="volume", destination=dest, anonymous=True, copy_data=True)
        )
    return [planned[d] for d in sorted(planned)]
