"""The click options shared by ``run`` and ``create`` (and the resource subset for ``update``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _opt(*names: str, multiple: bool = False, flag: bool = False, help: str, **kw: Any) -> Callable[[F], F]:
    if flag:
        return click.option(*names, is_flag=True, default=False, help=help, **kw)
    return click.option(*names, multiple=multiple, help=help, metavar=kw.pop("metavar", None), **kw)


RESOURCE_OPTIONS: list[Callable[[Any], Any]] = [
    _opt("-m", "--memory", help="Memory limit (e.g. 64m, 1g)"),
    _opt("--memory-swap", help="Swap limit equal to memory plus swap: -1 for unlimited swap"),
    _opt("--memory-reservation", help="Memory soft limit"),
    _opt("--cpus", help="Number of CPUs (e.g. 1.5)"),
    _opt("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)"),
    _opt("--cpu-period", type=int, help="Limit CPU CFS period (microseconds)"),
    _opt("--cpu-quota", type=int, help="Limit CPU CFS quota (microseconds)"),
    _opt("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)"),
    _opt("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)"),
    _opt("--pids-limit", type=int, help="Tune container pids limit (-1 for unlimited)"),
    _opt("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000, or 0 to disable"),
    _opt("--restart", help="Restart policy: no, on-failure[:max-retries], always, unless-stopped"),
]

CONTAINER_OPTIONS: list[Callable[[Any], Any]] = [
    _opt("-d", "--detach", flag=True, help="Run container in background and print container ID"),
    _opt("-i", "--interactive", flag=True, help="Keep STDIN open even if not attached"),
    _opt("-t", "--tty", flag=True, help="Allocate a pseudo-TTY"),
    _opt("--rm", "rm", flag=True, help="Automatically remove the container when it exits"),
    _opt("--name", help="Assign a name to the container"),
    _opt("-a", "--attach", multiple=True, help="Attach to STDIN, STDOUT or STDERR"),
    _opt("-e", "--env", multiple=True, help="Set environment variables (KEY=VALUE, or KEY to copy it)"),
    _opt("--env-file", multiple=True, help="Read in a file of environment variables"),
    _opt("-w", "--workdir", help="Working directory inside the container"),
    _opt("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    _opt("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
    _opt("-h", "--hostname", help="Container host name"),
    _opt("--domainname", help="Container NIS domain name"),
    _opt("-l", "--label", multiple=True, help="Set meta data on a container (key=value)"),
    _opt("--label-file", multiple=True, help="Read in a line delimited file of labels"),
    *RESOURCE_OPTIONS,
    _opt("--device-read-bps", multiple=True, help="Limit read rate (bytes per second) from a device"),
    _opt("--device-write-bps", multiple=True, help="Limit write rate (bytes per second) to a device"),
    _opt("--device-read-iops", multiple=True, help="Limit read rate (IO per second) from a device"),
    _opt("--device-write-iops", multiple=True, help="Limit write rate (IO per second) to a device"),
    _opt("--device", multiple=True, help="Add a host device to the container (/dev/x[:/dev/y[:rwm]])"),
    _opt("--cap-add", multiple=True, help="Add Linux capabilities"),
    _opt("--cap-drop", multiple=True, help="Drop Linux capabilities"),
    _opt("--privileged", flag=True, help="Give extended privileges to this container"),
    _opt("--read-only", flag=True, help="Mount the container's root filesystem as read only"),
    _opt("--security-opt", multiple=True, help="Security Options"),
    _opt("--ulimit", multiple=True, help="Ulimit options (e.g. nofile=1024:2048)"),
    _opt("--stop-signal", help="Signal to stop the container"),
    _opt("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container"),
    _opt(
        "--init", flag=True, help="Run an init inside the container that forwards signals and reaps processes"
    ),
    _opt("--health-cmd", help="Command to run to check health"),
    _opt("--health-interval", help="Time between running the check (ms|s|m|h)"),
    _opt("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h)"),
    _opt("--health-retries", type=int, help="Consecutive failures needed to report unhealthy"),
    _opt("--health-start-period", help="Start period for the container to initialize (ms|s|m|h)"),
    _opt("--no-healthcheck", flag=True, help="Disable any container-specified HEALTHCHECK"),
    _opt("--network", "--net", "network", help="Connect a container to a network (none, host, bridge, name)"),
    _opt("--network-alias", multiple=True, help="Add network-scoped alias for the container"),
    _opt("--ip", help="IPv4 address (e.g., 10.201.0.10) on a user-defined network"),
    _opt("--ip6", help="IPv6 address (e.g., fd00:1::10) on an IPv6-enabled network"),
    _opt("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    _opt("--link", multiple=True, help="Add link to another container (name[:alias])"),
    _opt("-p", "--publish", multiple=True, help="Publish a container's port(s) to the host"),
    _opt("-P", "--publish-all", flag=True, help="Publish all exposed ports to random ports"),
    _opt("--expose", multiple=True, help="Expose a port or a range of ports"),
    _opt("-v", "--volume", multiple=True, help="Bind mount a volume"),
    _opt("--mount", multiple=True, help="Attach a filesystem mount to the container"),
    _opt("--tmpfs", multiple=True, help="Mount a tmpfs directory"),
    _opt("--volumes-from", multiple=True, help="Mount volumes from the specified container(s)"),
    _opt("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)"),
    _opt("--dns", multiple=True, help="Set custom DNS servers"),
    _opt("--dns-search", multiple=True, help="Set custom DNS search domains"),
    _opt("--dns-option", multiple=True, help="Set DNS options"),
    _opt("--shm-size", help="Size of /dev/shm"),
    _opt("--sysctl", multiple=True, help="Sysctl options"),
    _opt("--oom-kill-disable", flag=True, help="Disable OOM Killer"),
    _opt("--oom-score-adj", type=int, help="Tune host's OOM preferences (-1000 to 1000)"),
    _opt("--group-add", multiple=True, help="Add additional groups to join"),
    _opt("--ipc", help="IPC mode to use"),
    _opt("--pid", help="PID namespace to use"),
    _opt("--uts", help="UTS namespace to use"),
    _opt("--platform", help="Set platform if server is multi-platform capable (accepted)"),
    _opt(
        "--pull",
        type=click.Choice(["always", "missing", "never"]),
        default="missing",
        help="Pull image before running",
    ),
    _opt("-q", "--quiet", flag=True, help="Suppress the pull output"),
    _opt("--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals to the process"),
    _opt("--detach-keys", help="Override the key sequence for detaching a container (accepted)"),
    _opt("--cidfile", help="Write the container ID to the file"),
]


def apply(options: list[Callable[[Any], Any]]) -> Callable[[F], F]:
    """Decorate a command with ``options`` (in --help order)."""

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate
