"""Container types: what a user asked for (spec) and what happened (state).

Field meanings follow Docker's ``Config`` and ``HostConfig`` (units noted where they
matter). The API layer converts Docker JSON to these; the engine merges the image's
config into a spec at create time (as dockerd does), so a stored spec is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skiff.types.network import EndpointConfig


@dataclass(frozen=True)
class RestartPolicy:
    """Docker restart policy: name is ``no``, ``on-failure``, ``always`` or ``unless-stopped``."""

    name: str = "no"
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class HealthConfig:
    """A health check. ``test`` is Docker's form: ``["NONE"]``, ``["CMD", ...]``, ``["CMD-SHELL", cmd]``.

    Durations are nanoseconds; 0 means the default (30 s interval/timeout, 3 retries).
    """

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    retries: int = 0
    start_period: int = 0
    start_interval: int = 0


@dataclass(frozen=True)
class Ulimit:
    """An rlimit: ``name`` without the RLIMIT_ prefix, lower case (``nofile``)."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class ThrottleDevice:
    """A block I/O limit for one device path (bytes/s or IO/s)."""

    path: str
    rate: int


@dataclass(frozen=True)
class DeviceMapping:
    """``--device /dev/host[:/dev/container[:rwm]]``."""

    path_on_host: str
    path_in_container: str
    cgroup_permissions: str = "rwm"


@dataclass(frozen=True)
class Mount:
    """A mount into the container: type is ``bind``, ``volume`` or ``tmpfs``.

    ``options``: a bind's propagation, a tmpfs's ``size=``/``mode=``, ``nocopy`` for a volume.
    The ``volume_*`` fields are ``--mount``'s volume-driver/volume-opt/volume-label: they
    apply when the mount creates its volume.
    """

    type: str
    source: str
    target: str
    read_only: bool = False
    options: tuple[str, ...] = ()
    volume_driver: str = ""
    volume_options: dict[str, str] = field(default_factory=dict)
    volume_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostConfig:
    """Docker's HostConfig, the subset skiff implements. Sizes in bytes, CPU in Docker's units."""

    memory: int = 0
    memory_swap: int = 0  # -1 unlimited, 0 = default (2 x memory when memory is set)
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int = 0  # 0 or -1: unlimited
    blkio_weight: int = 0
    blkio_device_read_bps: tuple[ThrottleDevice, ...] = ()
    blkio_device_write_bps: tuple[ThrottleDevice, ...] = ()
    blkio_device_read_iops: tuple[ThrottleDevice, ...] = ()
    blkio_device_write_iops: tuple[ThrottleDevice, ...] = ()
    devices: tuple[DeviceMapping, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    readonly_rootfs: bool = False
    security_opt: tuple[str, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    init: bool = False
    network_mode: str = "none"
    restart_policy: RestartPolicy = RestartPolicy()
    auto_remove: bool = False
    binds: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    tmpfs: dict[str, str] = field(default_factory=dict)
    port_bindings: dict[str, tuple[tuple[str, str], ...]] = field(
        default_factory=dict
    )  # "80/tcp" -> ((ip, port),)
    publish_all_ports: bool = False  # -P: every exposed port on a random host port
    links: tuple[str, ...] = ()  # legacy --link "name:alias" (default bridge)
    volumes_from: tuple[str, ...] = ()  # "container[:ro|rw]"
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    oom_kill_disable: bool = False
    oom_score_adj: int = 0
    shm_size: int = 0  # 0: 64 MiB
    sysctls: dict[str, str] = field(default_factory=dict)
    group_add: tuple[str, ...] = ()
    ipc_mode: str = ""
    pid_mode: str = ""
    uts_mode: str = ""
    console_size: tuple[int, int] = (0, 0)  # (height, width) of the tty when the process starts
    masked_paths: tuple[str, ...] | None = None  # None: Docker's defaults
    readonly_paths: tuple[str, ...] | None = None
    log_type: str = "json-file"  # Docker's driver name; the file itself is conmon's k8s-file format
    log_options: dict[str, str] = field(default_factory=dict)
    cgroupns_mode: str = ""  # "host" | "private"; "" = the daemon default (host on cgroup v1)
    device_cgroup_rules: tuple[str, ...] = ()  # "c 7:128 rwm"
    isolation: str = ""  # Windows-only in Docker; kept and shown as given
    volume_driver: str = ""  # default driver for this container's named volumes


@dataclass(frozen=True)
class ContainerSpec:
    """Docker's ``Config`` plus ``HostConfig``: everything needed to (re)create the container."""

    image: str  # as the user named it
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""  # "" means SIGTERM
    stop_timeout: int | None = None  # seconds; None means 10
    healthcheck: HealthConfig | None = None
    network_disabled: bool = False
    mac_address: str = ""
    # NetworkingConfig.EndpointsConfig: network name (or id) -> what the container asks of it.
    networks: dict[str, EndpointConfig] = field(default_factory=dict)
    host: HostConfig = HostConfig()


@dataclass(frozen=True)
class ContainerState:
    """Docker's ``State``. ``status`` is created|running|paused|restarting|removing|exited|dead."""

    status: str = "created"
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    restart_count: int = 0
    health_status: str = ""  # "", starting, healthy, unhealthy
    health_failing_streak: int = 0
    health_log: tuple[dict[str, object], ...] = ()
