"""Engine: builds and wires the services over one root directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from skiff.engine.build import BuildService
from skiff.engine.containers import ContainerService
from skiff.engine.ctrfs import ContainerFS
from skiff.engine.distribution import DistributionService
from skiff.engine.events import EventBus
from skiff.engine.execs import ExecService
from skiff.engine.health import HealthMonitor
from skiff.engine.images import ImageService
from skiff.engine.networks import NetworkConfig, NetworkService
from skiff.engine.volumes import VolumeService
from skiff.images.imagestore import ImageStore
from skiff.registry.client_endpoints import RegistryConfig
from skiff.registry.client_session import Registries
from skiff.runtime.runc import Runtime
from skiff.store.content import ContentStore
from skiff.store.metadata import MetadataDB
from skiff.store.snapshots import OverlaySnapshotter

log = logging.getLogger("skiff.engine")


@dataclass(frozen=True)
class EngineConfig:
    """Where things live and which runtime to use."""

    root: Path = Path("/var/lib/skiff")
    run_dir: Path = Path("/run/skiff")
    runtime: str = "runc"
    cgroup_parent: str = "skiff"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)


class Engine:
    """All engine services for one skiffd."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        root = config.root
        root.mkdir(parents=True, exist_ok=True)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        self.db = MetadataDB(root / "metadata.db")
        self.content = ContentStore(root / "content")
        self.snapshotter = OverlaySnapshotter(root / "snapshots")
        self.image_store = ImageStore(self.content, self.snapshotter, self.db)
        self.events = EventBus(self.db)
        self.runtime = Runtime(
            state_dir=config.run_dir / "conmon",
            runtime=config.runtime,
            runtime_root=config.run_dir / config.runtime,
        )
        self.containers = ContainerService(
            root=root,
            db=self.db,
            images=self.image_store,
            snapshotter=self.snapshotter,
            runtime=self.runtime,
            events=self.events,
            cgroup_parent=config.cgroup_parent,
        )
        self.networks = NetworkService(
            root=root, run_dir=config.run_dir, db=self.db, events=self.events, config=config.network
        )
        self.networks.containers = self.containers
        self.containers.networks = self.networks
        self.volumes = VolumeService(root=root, db=self.db, events=self.events)
        self.containers.volumes = self.volumes
        self.ctrfs = ContainerFS(
            containers=self.containers,
            images=self.image_store,
            snapshotter=self.snapshotter,
            volumes=self.volumes,
            events=self.events,
        )
        self.images = ImageService(self.image_store, self.containers, self.events)
        self.distribution = DistributionService(
            self.image_store,
            self.events,
            Registries(config.registry, root / "distribution"),
            self.images.spool_dir,
        )
        self.builds = BuildService(root, self.db, self.image_store, self.images, self.containers)
        self.builds.puller = self.distribution.pull_for_build
        self.execs = ExecService(self.containers)
        self.health = HealthMonitor(self.containers, self.execs)

    async def start(self) -> None:
        """Startup recovery: drop half-written state, reattach to live containers.

        Order matters: half-made containers go first (their snapshots pin layers), then
        the image store drops leftover ingests, half-extracted layers and unused layers.
        """
        # Volume references come from the container records, before containers recover
        # (which may remove some); mounts no running container uses go after.
        self.volumes.recover()
        await self.networks.start()
        await self.containers.recover()
        self.volumes.reconcile()
        await self.builds.recover()  # interrupted builds' leftovers go before the image store's GC
        self.image_store.recover()
        self.distribution.recover()  # after the image GC: metadata of what it removed goes too

    async def stop(self) -> None:
        await self.distribution.close()
        await self.containers.shutdown()
        await self.networks.close()
        await self.volumes.drain()
        self.db.close()
