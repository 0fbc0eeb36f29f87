"""``skiffd``: the node daemon. Serves the Docker Engine API on a unix socket."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from skiff import __version__
from skiff.daemon.config import DaemonConfig, load_config_file, merge
from skiff.daemon.listen import ListenPlan, UnixAddress, plan_listeners, remove_unix_sockets, start_sites
from skiff.errors import SkiffError

if TYPE_CHECKING:
    from skiff.cluster.manager import ClusterRuntime

log = logging.getLogger("skiffd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="skiffd", description="skiff's container engine daemon (Docker Engine API)."
    )
    p.add_argument("--root", help="state directory (default /var/lib/skiff)")
    p.add_argument("--run-dir", help="runtime state directory (default /run/skiff)")
    p.add_argument(
        "-H",
        "--host",
        action="append",
        help="listen address, unix:///path or tcp://host:port; repeatable (default unix:///run/skiff/skiff.sock)",
    )
    for flag, what in (
        ("--tls", "TLS on tcp:// hosts; implied by --tlsverify. --tls=false: plain TCP, unauthenticated"),
        ("--tlsverify", "TLS on tcp:// hosts, clients need a certificate signed by --tlscacert"),
    ):
        p.add_argument(flag, nargs="?", const=True, type=parse_bool, metavar="BOOL", help=what)
    p.add_argument(
        "--tlscacert", help="CA clients' certificates must be signed by (default ~/.docker/ca.pem)"
    )
    p.add_argument("--tlscert", help="the server's TLS certificate (default ~/.docker/cert.pem)")
    p.add_argument("--tlskey", help="the server's TLS key (default ~/.docker/key.pem)")
    p.add_argument("--runtime", choices=["runc", "crun"], help="OCI runtime (default runc)")
    p.add_argument("--cgroup-parent", help="parent cgroup for containers (default skiff)")
    p.add_argument("--config", help="config file (YAML or JSON; keys as the long flags)")
    p.add_argument("-b", "--bridge", help="Linux bridge of the default network (default skiff0)")
    p.add_argument("--bip", help="the default network bridge's address and prefix (default 10.211.0.1/16)")
    p.add_argument(
        "--default-address-pool", help="CIDR that user networks' subnets come from (default 10.212.0.0/14)"
    )
    p.add_argument("--iptables-chain-prefix", help="prefix of skiff's iptables chains (default SKIFF)")
    p.add_argument(
        "--registry-mirror",
        action="append",
        metavar="URL",
        help="preferred registry mirror for docker.io pulls; repeatable (daemon.json: registry-mirrors)",
    )
    p.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST|CIDR",
        help="registry that may use plain HTTP or unverified TLS; repeatable (localhost is always)",
    )
    p.add_argument("--node-name", help="this node's name in a cluster (default: the host name)")
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level (default info)"
    )
    p.add_argument("--version", action="version", version=f"skiffd {__version__}")
    return p.parse_args(argv)


def parse_bool(text: str) -> bool:
    """Go's flag syntax for booleans (``--tls=false``), which dockerd's users type."""
    value = text.strip().lower()
    if value in ("1", "t", "true", "yes"):
        return True
    if value in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (use true or false)")


def build_config(args: argparse.Namespace) -> DaemonConfig:
    config = DaemonConfig()
    if args.config:
        config = merge(config, load_config_file(Path(args.config)))
    flags = {
        "root": args.root,
        "run-dir": args.run_dir,
        "hosts": args.host,
        "runtime": args.runtime,
        "cgroup-parent": args.cgroup_parent,
        "log-level": args.log_level,
        "bridge": args.bridge,
        "bip": args.bip,
        "default-address-pool": args.default_address_pool,
        "iptables-chain-prefix": args.iptables_chain_prefix,
        "tls": args.tls,
        "tlsverify": args.tlsverify,
        "tlscacert": args.tlscacert,
        "tlscert": args.tlscert,
        "tlskey": args.tlskey,
        "registry-mirrors": args.registry_mirror,
        "insecure-registries": args.insecure_registry,
        "node-name": args.node_name,
    }
    return merge(config, {k: v for k, v in flags.items() if v is not None})


class JsonishFormatter(logging.Formatter):
    """One line per record, key=value: greppable and structured."""

    def format(self, record: logging.LogRecord) -> str:
        base = (
            f'time="{self.formatTime(record, "%Y-%m-%dT%H:%M:%S")}" level={record.levelname.lower()} '
            f'logger={record.name} msg="{record.getMessage()}"'
        )
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


async def serve(config: DaemonConfig) -> None:
    from skiff.api.app import create_app
    from skiff.api.cluster import CLUSTER_KEY
    from skiff.engine.engine import Engine, EngineConfig
    from skiff.engine.networks import NetworkConfig
    from skiff.registry.client_endpoints import RegistryConfig

    plan = plan_listeners(config)  # a bad address or certificate stops us before anything is touched
    engine = Engine(
        EngineConfig(
            root=config.root,
            run_dir=config.run_dir,
            runtime=config.runtime,
            cgroup_parent=config.cgroup_parent,
            network=NetworkConfig(
                bridge=config.bridge,
                bip=config.bip,
                pool=config.default_address_pool,
                pool_size=config.default_address_pool_size,
                chain_prefix=config.iptables_chain_prefix,
            ),
            registry=RegistryConfig(mirrors=config.registry_mirrors, insecure=config.insecure_registries),
        )
    )
    await engine.start()
    app = create_app(engine)
    cluster = cluster_runtime(config, plan)
    app[CLUSTER_KEY] = cluster
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await start_sites(runner, plan, config.socket_group)
    except BaseException:
        await runner.cleanup()
        await engine.stop()
        remove_unix_sockets(plan)
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await cluster.start()  # after the API is up: the node agent talks to it
    log.info("skiffd %s ready (root %s, runtime %s)", __version__, config.root, config.runtime)
    await stop.wait()
    log.info("shutting down; containers keep running under conmon")
    await cluster.stop()
    await runner.cleanup()
    await engine.stop()
    remove_unix_sockets(plan)


def cluster_runtime(config: DaemonConfig, plan: ListenPlan) -> ClusterRuntime:
    """The cluster runtime; its agent reaches this daemon on its unix socket (else plain TCP)."""
    from skiff.cluster.manager import ClusterRuntime

    unix = [a for a in plan.addresses if isinstance(a, UnixAddress)]
    engine_host = str(unix[0]) if unix else str(plan.addresses[0])
    return ClusterRuntime(config.root, engine_host=engine_host, node_name=config.node_name or None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = build_config(args)
    except SkiffError as exc:
        print(f"skiffd: {exc}", file=sys.stderr)
        return 1
    handler = logging.StreamHandler()
    handler.setFormatter(JsonishFormatter())
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    for noisy in ("pyroute2", "asyncio"):  # their debug output drowns skiffd's own
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    if os.geteuid() != 0:
        print("skiffd: must run as root (it creates namespaces, mounts and cgroups)", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(config))
    except SkiffError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
