"""Start and stop the peers a benchmark compares skiff against, each in its own private dirs.

- ``docker``: the Debian ``docker.io`` dockerd (with its managed containerd), started by us with
  its own data/exec roots and socket, no iptables, no forwarding; stopped by its pid. No bridge,
  or (``bridge_cidr``) a bridge ``skbench-d0`` the bench creates for it and deletes afterwards.
- ``podman``: the Debian ``podman`` with its own --root/--runroot/--tmpdir and network config dir
  (no daemon); :func:`podman_network` adds a bridge network with a skbench-named bridge.
- ``runc``: bare ``runc run`` of a bundle unpacked from the same rootfs.
- ``skiff``: a skiffd started by the bench with its own --root and socket; stopped by its pid.
  ``settings`` go to it as a config file (e.g. its default bridge's name and subnet).

skiffd and dockerd are driven by the SAME client: the docker CLI (``/usr/local/bin/docker`` when
present) with ``DOCKER_HOST`` pointing at the daemon's socket, so client cost is identical.
Everything is removed on the way out, even on failure (context managers + ``atexit``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import RUN_ID, remove_cgroups, unmount_all_under, wait_for_ping
from bench.rootfs import build_rootfs_tar, make_runc_bundle

DOCKER_DIR = Path("/tmp/skiff-bench-docker")
PODMAN_DIR = Path("/tmp/skiff-bench-podman")
PODMAN_NETWORKS = PODMAN_DIR / "networks"
NETAVARK_IPAM_DB = Path("/run/containers/networks/ipam.db")  # rootful podman's, fixed
RUNC_DIR = Path("/tmp/skiff-bench-runc")
SKIFF_DIR = Path("/tmp/skiff-bench-skiff")
IMAGE = "busybox:latest"
DOCKER_BRIDGE = "skbench-d0"  # the bridge docker_peer(bridge_cidr=...) creates and deletes


def docker_cli() -> str:
    """The docker CLI used as the common client for dockerd and skiffd."""
    for candidate in ("/usr/local/bin/docker", shutil.which("docker") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no docker CLI found: apt-get install docker.io")


def skiff_bin(name: str) -> str:
    """A skiff entry point from the venv running this bench."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make venv` first")
    return str(path)


def ensure_packages(*packages: str) -> None:
    """apt-get install the Debian packages that are missing (services are not started by dpkg here)."""
    missing = [
        p
        for p in packages
        if "install ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False
        ).stdout
    ]
    if not missing:
        return
    print(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL
    )


@dataclass
class Peer:
    """One engine as a benchmark sees it: a CLI argv prefix, its environment and its processes."""

    name: str
    cli: list[str]
    env: dict[str, str]
    socket: str | None = None  # Engine API socket, for direct API timing
    run_flags: list[str] = field(default_factory=list)  # inserted after `run`/`create`
    daemon_pids: Callable[[], list[int]] = lambda: []

    def argv(self, *args: str) -> list[str]:
        """A full command line: ``peer.argv("ps", "-a")``."""
        return [*self.cli, *args]

    def run_argv(self, *args: str, verb: str = "run") -> list[str]:
        """``<cli> run <peer flags> <args>``: peers differ only in flags such as a cgroup parent."""
        return [*self.cli, verb, *self.run_flags, *args]

    def sh(self, *args: str, check: bool = True, timeout: float = 120.0) -> str:
        """Run a peer command and return its stdout."""
        proc = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def remove_all_containers(self) -> None:
        """Force-remove every container of this peer (its dirs are private, so all are ours)."""
        ids = self.sh("ps", "-aq", check=False).split()
        for start in range(0, len(ids), 50):
            self.sh("rm", "-f", *ids[start : start + 50], check=False, timeout=300)


_cleanups: list[Callable[[], None]] = []


def _run_cleanups() -> None:
    while _cleanups:
        try:
            _cleanups.pop()()
        except Exception as exc:  # cleanup must go on for the others
            print(f"cleanup error: {exc}", file=sys.stderr)


atexit.register(_run_cleanups)
# SIGTERM/SIGHUP: turn into SystemExit so `finally` blocks and atexit run.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))


@contextmanager
def guarded(cleanup: Callable[[], None]) -> Iterator[None]:
    """Run ``cleanup`` on leaving the block, or at exit if the block is torn down abruptly."""
    _cleanups.append(cleanup)
    try:
        yield
    finally:
        if cleanup in _cleanups:
            _cleanups.remove(cleanup)
            cleanup()


def _stop_pid(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _client_env(sock: Path, config_dir: Path) -> dict[str, str]:
    # A private DOCKER_CONFIG keeps the CLI from reading or writing the user's ~/.docker.
    config_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(config_dir)}


def rootfs_tar() -> Path:
    """The shared busybox rootfs tar (built once per run)."""
    path = Path(f"/tmp/skiff-bench-rootfs-{RUN_ID}.tar")
    if not path.exists():
        build_rootfs_tar(path)
        _cleanups.insert(0, lambda: path.unlink(missing_ok=True))
    return path


def link_exists(name: str) -> bool:
    """True if a network interface of that name exists in the host's namespace."""
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> None:
    """Delete an interface the bench created (a bridge a peer was given or made), if still there."""
    if link_exists(name):
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def claim_link_name(name: str) -> None:
    """Refuse to go on when an interface the bench is about to create already exists.

    It belongs to someone else (or to a bench that crashed): never adopt it, never delete it.
    """
    if link_exists(name):
        raise RuntimeError(f"interface {name} exists: another bench is running, or remove its leftovers")


def add_bridge(name: str, cidr: str) -> None:
    """Create a Linux bridge with an address and bring it up (the caller deletes it)."""
    claim_link_name(name)
    for argv in (
        ["ip", "link", "add", name, "type", "bridge"],
        ["ip", "addr", "add", cidr, "dev", name],
        ["ip", "link", "set", name, "up"],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            delete_link(name)
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


def iptables_chains() -> set[tuple[str, str]]:
    """(table, chain) of every iptables chain, built-in and user-defined, in filter and nat."""
    chains: set[tuple[str, str]] = set()
    for table in ("filter", "nat"):
        out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=False)
        chains |= {(table, line[1:].split()[0]) for line in out.stdout.splitlines() if line.startswith(":")}
    return chains


def iptables_rules(table: str) -> list[str]:
    """The ``-A CHAIN ...`` lines of one table, as iptables-save prints them."""
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.startswith("-A ")]


def delete_rule(table: str, rule: str) -> bool:
    """Delete one rule given as an iptables-save ``-A`` line."""
    argv = ["iptables", "-w", "-t", table, "-D", *shlex.split(rule)[1:]]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def remove_chains(chains: set[tuple[str, str]]) -> None:
    """Remove user-defined chains the bench's peers created: the jumps to them, then the chains."""
    for table in ("filter", "nat"):
        names = {c for t, c in chains if t == table}
        if not names:
            continue
        for rule in iptables_rules(table):
            words = rule.split()
            if words[1] not in names and ("-j" in words and words[words.index("-j") + 1] in names):
                delete_rule(table, rule)
        for name in names:
            subprocess.run(["iptables", "-w", "-t", table, "-F", name], capture_output=True, check=False)
        for name in names:
            subprocess.run(["iptables", "-w", "-t", table, "-X", name], capture_output=True, check=False)


def _import(peer: Peer) -> None:
    subprocess.run(
        peer.argv("import", "--change", 'CMD ["sh"]', str(rootfs_tar()), IMAGE),
        env=peer.env,
        check=True,
        capture_output=True,
    )


@contextmanager
def docker_peer(bridge_cidr: str | None = None, address_pool: str | None = None) -> Iterator[Peer]:
    """A private dockerd (Debian docker.io) with busybox:latest imported.

    Without ``bridge_cidr`` it has no bridge (``--network none`` only). With it, the bench creates
    the bridge ``skbench-d0`` holding that address (e.g. ``10.216.0.1/24``) and dockerd's default
    ``bridge`` network uses it; iptables, masquerading and forwarding stay off in either case, so
    dockerd changes nothing on the host but its veths. The bridge is deleted after dockerd stops.
    ``address_pool`` (e.g. ``10.246.0.0/16``) is where user networks get their /24s (dockerd
    names their bridges ``br-<id>`` and deletes them with the networks).
    """
    ensure_packages("docker.io")
    if DOCKER_DIR.exists():
        raise RuntimeError(f"{DOCKER_DIR} exists: another bench is running, or remove its leftovers")
    if bridge_cidr is not None:
        claim_link_name(DOCKER_BRIDGE)
    DOCKER_DIR.mkdir(parents=True)
    (DOCKER_DIR / "daemon.json").write_text("{}\n")
    sock = DOCKER_DIR / "docker.sock"
    cgroup = f"skiff-bench-docker-{RUN_ID}"
    argv = [
        "dockerd",
        f"--data-root={DOCKER_DIR}/root",
        f"--exec-root={DOCKER_DIR}/exec",
        f"--pidfile={DOCKER_DIR}/pid",
        f"--config-file={DOCKER_DIR}/daemon.json",
        f"-H=unix://{sock}",
        f"--bridge={DOCKER_BRIDGE if bridge_cidr else 'none'}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        f"--cgroup-parent=/{cgroup}",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]
    if address_pool is not None:
        argv.append(f"--default-address-pool=base={address_pool},size=24")
    if bridge_cidr is not None:
        try:
            add_bridge(DOCKER_BRIDGE, bridge_cidr)
        except BaseException:
            shutil.rmtree(DOCKER_DIR, ignore_errors=True)
            raise
    log = (DOCKER_DIR / "dockerd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    peer = Peer("docker", [docker_cli()], _client_env(sock, DOCKER_DIR / "client"), socket=str(sock))
    peer.daemon_pids = lambda: [proc.pid, *_children(proc.pid)]

    def cleanup() -> None:
        try:
            if proc.poll() is None:
                peer.remove_all_containers()
        finally:
            _stop_pid(proc)
            log.close()
            if bridge_cidr is not None:
                delete_link(DOCKER_BRIDGE)
            unmount_all_under(DOCKER_DIR)
            remove_cgroups(cgroup)
            shutil.rmtree(DOCKER_DIR, ignore_errors=True)

    with guarded(cleanup):
        wait_for_ping(str(sock), 60, proc)
        _import(peer)
        yield peer


@contextmanager
def podman_peer(network_backend: str | None = None) -> Iterator[Peer]:
    """podman (Debian) with private storage, runtime and network config dirs, busybox:latest imported.

    ``network_backend`` (``cni`` or ``netavark``) overrides podman's own choice (netavark when it
    is installed) through a private containers.conf: the system one plus that setting.
    """
    ensure_packages("podman")
    if PODMAN_DIR.exists():
        raise RuntimeError(f"{PODMAN_DIR} exists: another bench is running, or remove its leftovers")
    PODMAN_DIR.mkdir(parents=True)
    cgroup = f"skiff-bench-podman-{RUN_ID}"
    env = dict(os.environ)
    if network_backend is not None:
        system = Path("/usr/share/containers/containers.conf")
        text = system.read_text() if system.exists() else ""
        setting = f'[network]\nnetwork_backend = "{network_backend}"\n'
        text = text.replace("[network]\n", setting, 1) if "[network]\n" in text else text + setting
        (PODMAN_DIR / "containers.conf").write_text(text)
        env["CONTAINERS_CONF"] = str(PODMAN_DIR / "containers.conf")
    cli = [
        "podman",
        f"--root={PODMAN_DIR}/root",
        f"--runroot={PODMAN_DIR}/runroot",
        f"--tmpdir={PODMAN_DIR}/tmp",
        f"--volumepath={PODMAN_DIR}/volumes",
        f"--network-config-dir={PODMAN_NETWORKS}",
        "--storage-driver=overlay",
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--runtime=runc",  # the runtime docker and skiff use too
    ]
    # podman asks for nofile/nproc limits above the hard limits we run under, and raising a hard
    # limit needs CAP_SYS_RESOURCE, which some machines withhold from root: ask for lower ones.
    flags = [f"--cgroup-parent=/{cgroup}"]
    for name, res in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        limit = min(4096, resource.getrlimit(res)[1])
        flags.append(f"--ulimit={name}={limit}:{limit}")
    peer = Peer("podman", cli, env, run_flags=flags)

    def cleanup() -> None:
        try:
            peer.sh("rm", "-af", "-t", "0", check=False, timeout=600)
        finally:
            unmount_all_under(PODMAN_DIR)
            remove_cgroups(cgroup)
            shutil.rmtree(PODMAN_DIR, ignore_errors=True)

    with guarded(cleanup):
        subprocess.run(
            peer.argv("import", str(rootfs_tar()), IMAGE), env=env, check=True, capture_output=True
        )
        yield peer


@contextmanager
def podman_network(peer: Peer, name: str, subnet: str, bridge: str) -> Iterator[str]:
    """A podman bridge network ``name`` on ``bridge`` (no DNS server); yields the backend's name.

    podman 4.3 has no option for the bridge's name, so the bench rewrites it in the network's
    file (podman reads its network config dir on every invocation). Removed on the way out with
    whatever podman left: the bridge, iptables chains netavark created during this run (it keeps
    its global ``NETAVARK*`` chains once made), netavark's lease database if this run made it,
    the CNI backend's IPAM dir for this network.
    """
    claim_link_name(bridge)
    chains_before = iptables_chains()
    cni_root = Path("/var/lib/cni")  # the CNI backend's leases and result cache
    cni_root_existed = cni_root.exists()
    cni_ipam = cni_root / "networks" / name
    cni_ipam_existed = cni_ipam.exists()
    # netavark's leases live in a fixed host-wide file (no flag moves it): remove it afterwards
    # when this run created it, else it stays (with this network's bucket).
    netavark_ipam = NETAVARK_IPAM_DB
    netavark_ipam_existed = netavark_ipam.exists()
    backend = peer.sh("info", "--format", "{{.Host.NetworkBackend}}").strip()

    def cleanup() -> None:
        peer.sh("network", "rm", "-f", name, check=False)
        delete_link(bridge)
        new = {(t, c) for t, c in iptables_chains() - chains_before if c.startswith("NETAVARK")}
        remove_chains(new)
        if not cni_ipam_existed:
            shutil.rmtree(cni_ipam, ignore_errors=True)
        if not cni_root_existed:  # made by this run: drop the dirs if nothing else is in them
            for d in (cni_root / "networks", cni_root / "results", cni_root):
                with contextlib.suppress(OSError):
                    d.rmdir()
        if not netavark_ipam_existed:
            netavark_ipam.unlink(missing_ok=True)

    with guarded(cleanup):
        peer.sh("network", "create", "--disable-dns", f"--subnet={subnet}", name)
        if (path := PODMAN_NETWORKS / f"{name}.json").exists():  # netavark
            config = json.loads(path.read_text())
            config["network_interface"] = bridge
        elif (path := PODMAN_NETWORKS / f"{name}.conflist").exists():  # CNI
            config = json.loads(path.read_text())
            config["plugins"][0]["bridge"] = bridge
        else:
            raise RuntimeError(f"podman network create left no config for {name} in {PODMAN_NETWORKS}")
        path.write_text(json.dumps(config, indent=2))
        yield backend


@contextmanager
def runc_bundle(runtime: str = "runc") -> Iterator[Callable[[int], list[str]]]:
    """A bundle running ``true``; yields ``argv(i)`` for ``<runtime> run`` of container number i."""
    base = RUNC_DIR / f"{runtime}-{RUN_ID}"
    cgroup = f"skiff-bench-{runtime}-{RUN_ID}"
    state = base / "state"

    def argv(i: int) -> list[str]:
        return [runtime, f"--root={state}", "run", f"--bundle={base / 'bundle'}", f"skiff-bench-{RUN_ID}-{i}"]

    def cleanup() -> None:
        for cid in _runc_ids(runtime, state):
            subprocess.run(
                [runtime, f"--root={state}", "delete", "-f", cid], capture_output=True, check=False
            )
        unmount_all_under(base)
        remove_cgroups(cgroup)
        shutil.rmtree(base, ignore_errors=True)
        with contextlib.suppress(OSError):
            RUNC_DIR.rmdir()  # only when no other run uses it

    with guarded(cleanup):
        make_runc_bundle(base / "bundle", rootfs_tar(), cgroup, ["/bin/true"])
        yield argv


def _runc_ids(runtime: str, state: Path) -> list[str]:
    if not state.exists():
        return []
    out = subprocess.run(
        [runtime, f"--root={state}", "list", "-q"], capture_output=True, text=True, check=False
    )
    return out.stdout.split()


@contextmanager
def skiff_peer(
    runtime: str = "runc",
    settings: dict[str, object] | None = None,
    bridge: str | None = None,
    chain_prefix: str | None = None,
) -> Iterator[Peer]:
    """A skiffd started by the bench with its own root and socket, busybox bootstrapped into it.

    ``settings`` are written to a private config file (keys as in skiffd's config, e.g. its
    default bridge's name and address). ``bridge`` names a bridge this skiffd will create and
    ``chain_prefix`` the prefix of its iptables chains: neither may exist beforehand, and both
    are deleted after skiffd has stopped (skiffd keeps them across restarts, as dockerd does).
    """
    if SKIFF_DIR.exists():
        raise RuntimeError(f"{SKIFF_DIR} exists: another bench is running, or remove its leftovers")
    if bridge is not None:
        claim_link_name(bridge)

    def own_chains() -> set[tuple[str, str]]:
        if chain_prefix is None:
            return set()
        return {(t, c) for t, c in iptables_chains() if c.startswith(chain_prefix + "-")}

    if own_chains():
        raise RuntimeError(f"iptables chains {chain_prefix}-* exist: another bench is running, or leftovers")
    SKIFF_DIR.mkdir(parents=True)
    sock = SKIFF_DIR / "skiff.sock"
    argv = [
        skiff_bin("skiffd"),
        f"--root={SKIFF_DIR}/root",
        f"--host=unix://{sock}",
        f"--runtime={runtime}",
        "--log-level=warning",
    ]
    if settings:
        (SKIFF_DIR / "skiffd.json").write_text(json.dumps(settings, indent=2) + "\n")
        argv.append(f"--config={SKIFF_DIR}/skiffd.json")
    # Runtime state (conmon/runc) must not share the real daemon's /run/skiff: pass a private
    # run dir under whichever name this skiffd knows it by.
    helptext = subprocess.run([argv[0], "--help"], capture_output=True, text=True, check=False).stdout
    for flag in ("--exec-root", "--run-dir", "--run-root"):
        if flag in helptext:
            argv.append(f"{flag}={SKIFF_DIR}/run")
            break
    cgroup = f"skiff-bench-skiff-{RUN_ID}"
    if "--cgroup-parent" in helptext:
        argv.append(f"--cgroup-parent={cgroup}")
    log = (SKIFF_DIR / "skiffd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    peer = Peer("skiff", [docker_cli()], _client_env(sock, SKIFF_DIR / "client"), socket=str(sock))
    peer.daemon_pids = lambda: [proc.pid]

    def cleanup() -> None:
        try:
            if proc.poll() is None:
                peer.remove_all_containers()  # SIGTERM leaves containers running, by design
        finally:
            _stop_pid(proc)
            log.close()
            if bridge is not None:
                delete_link(bridge)
            remove_chains(own_chains())
            unmount_all_under(SKIFF_DIR)
            remove_cgroups(cgroup)
            shutil.rmtree(SKIFF_DIR, ignore_errors=True)

    with guarded(cleanup):
        try:
            wait_for_ping(str(sock), 30, proc)
        except RuntimeError as exc:
            tail = (SKIFF_DIR / "skiffd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}\n--- skiffd.log ---\n{tail}") from exc
        cli = skiff_peer_cli(peer)
        bootstrap = subprocess.run(
            cli.argv("image", "bootstrap", "busybox"), env=cli.env, capture_output=True
        )
        if bootstrap.returncode != 0:
            _import(peer)  # fall back to the Engine API's import, through the docker CLI
        yield peer


def skiff_peer_cli(daemon: Peer) -> Peer:
    """skiff's own CLI against the same skiffd, as an extra line next to the docker CLI."""
    env = {**daemon.env, "SKIFF_HOST": daemon.env["DOCKER_HOST"]}
    return Peer("skiff CLI", [skiff_bin("skiff")], env, socket=daemon.socket, daemon_pids=daemon.daemon_pids)


def _children(pid: int) -> list[int]:
    """Direct children of a process (dockerd's managed containerd)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Wait for processes to exit (after a stop), without signalling anything."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
