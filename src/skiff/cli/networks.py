"""``network create|ls|inspect|rm|prune|connect|disconnect``, with docker's flags and output."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import click

from skiff.cli.context import CliContext, for_each, pass_cli, usage_errors
from skiff.cli.filters import parse_filters
from skiff.cli.format.rows import ObjectRow, short_id
from skiff.cli.format.table import render_rows
from skiff.cli.options.network import parse_ipv4, parse_ipv6, parse_link
from skiff.cli.options.values import parse_key_value
from skiff.errors import InvalidArgument, NotFound
from skiff.units import go_time, parse_rfc3339

NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_TITLES = {"ID": "NETWORK ID", "CreatedAt": "CREATED AT", "IPv6": "IPV6"}
_NETWORK_FIELDS = ("CreatedAt", "Driver", "ID", "IPv6", "Internal", "Labels", "Name", "Scope")


class NetworkRow(ObjectRow):
    """One ``GET /networks`` item as docker's network formatter sees it (``.ID``, ``.Name``, ...)."""

    def __init__(self, raw: dict[str, Any], trunc: bool = True) -> None:
        self.raw = raw
        self.trunc = trunc

    def to_json(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in _NETWORK_FIELDS}

    @property
    def ID(self) -> str:
        ident = str(self.raw.get("Id", ""))
        return short_id(ident) if self.trunc else ident

    @property
    def IPv6(self) -> str:
        return "true" if self.raw.get("EnableIPv6") else "false"

    @property
    def Internal(self) -> str:
        return "true" if self.raw.get("Internal") else "false"

    @property
    def CreatedAt(self) -> str:
        """Go's ``time.Time.String()`` of ``Created`` (in UTC)."""
        created = str(self.raw.get("Created", ""))
        stamp = parse_rfc3339(created)
        if stamp is None:
            return "0001-01-01 00:00:00 +0000 UTC"
        frac = re.search(r"\.(\d+)", created)
        digits = frac.group(1).rstrip("0") if frac else ""
        text = go_time(stamp)
        return text[:19] + (f".{digits}" if digits else "") + text[19:]


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p]


def consolidate_ipam(
    subnets: tuple[str, ...], ranges: tuple[str, ...], gateways: tuple[str, ...]
) -> list[dict[str, Any]]:
    """docker's consolidateIpam: pair each --ip-range and --gateway with the --subnet holding it."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")

    def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid CIDR address: {text}") from None

    def addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            return (
                ipaddress.ip_network(text, strict=False).network_address
                if "/" in text
                else ipaddress.ip_address(text)
            )
        except ValueError:
            raise InvalidArgument(f"invalid address: {text}") from None

    configs: dict[str, dict[str, Any]] = {}
    for s in subnets:
        net(s)
        for other in configs:
            if net(s).overlaps(net(other)):
                raise InvalidArgument("multiple overlapping subnet configuration is not supported")
        configs[s] = {"Subnet": s, "AuxiliaryAddresses": {}}
    for key, values in (("IPRange", ranges), ("Gateway", gateways)):
        what = "ranges" if key == "IPRange" else "gateways"
        for value in values:
            matched = False
            for s, config in configs.items():
                if addr(value) not in net(s):
                    continue
                if config.get(key):
                    raise InvalidArgument(
                        f"cannot configure multiple {what} ({value}, {config[key]}) on the same subnet ({s})"
                    )
                config[key] = value
                matched = True
            if not matched:
                raise InvalidArgument(
                    f"no matching subnet for {'range' if key == 'IPRange' else 'gateway'} {value}"
                )
    return [
        {
            "Subnet": c["Subnet"],
            "IPRange": c.get("IPRange", ""),
            "Gateway": c.get("Gateway", ""),
            "AuxiliaryAddresses": c["AuxiliaryAddresses"],
        }
        for c in configs.values()
    ]


def _kv_map(values: tuple[str, ...], what: str) -> dict[str, str]:
    return dict(parse_key_value(v, what) for v in values)


def network_create_body(
    name: str,
    *,
    driver: str = "bridge",
    subnets: tuple[str, ...] = (),
    gateways: tuple[str, ...] = (),
    ip_ranges: tuple[str, ...] = (),
    internal: bool = False,
    attachable: bool = False,
    ipv6: bool = False,
    labels: tuple[str, ...] = (),
    opts: tuple[str, ...] = (),
    ipam_driver: str = "default",
    ipam_opts: tuple[str, ...] = (),
    scope: str = "",
) -> dict[str, Any]:
    """The docker CLI's ``POST /networks/create`` body for ``network create`` flags."""
    return {
        "Name": name,
        "CheckDuplicate": True,
        "Driver": driver,
        "Scope": scope,
        "EnableIPv6": ipv6,
        "IPAM": {
            "Driver": ipam_driver,
            "Options": _kv_map(ipam_opts, "ipam option"),
            "Config": consolidate_ipam(subnets, ip_ranges, gateways),
        },
        "Internal": internal,
        "Attachable": attachable,
        "Ingress": False,
        "ConfigOnly": False,
        "ConfigFrom": None,
        "Options": _kv_map(opts, "option"),
        "Labels": _kv_map(labels, "label"),
    }


@click.group("network")
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("-d", "--driver", default="bridge", show_default=True, help="Driver to manage the Network")
@click.option("--subnet", multiple=True, help="Subnet in CIDR format that represents a network segment")
@click.option("--gateway", multiple=True, help="IPv4 Gateway for the master subnet")
@click.option("--ip-range", multiple=True, help="Allocate container ip from a sub-range")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--attachable", is_flag=True, help="Enable manual container attachment")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 networking (dual stack; give an IPv6 --subnet)")
@click.option("--label", multiple=True, help="Set metadata on a network")
@click.option(
    "-o", "--opt", multiple=True, help="Set driver specific options (com.docker.network.bridge.name=...)"
)
@click.option("--ipam-driver", default="default", help="IP Address Management Driver")
@click.option("--ipam-opt", multiple=True, help="Set IPAM driver specific options")
@click.option("--scope", default="", help="Control the network's scope")
@click.argument("name")
@pass_cli
def create(
    obj: CliContext,
    driver: str,
    subnet: tuple[str, ...],
    gateway: tuple[str, ...],
    ip_range: tuple[str, ...],
    internal: bool,
    attachable: bool,
    ipv6: bool,
    label: tuple[str, ...],
    opt: tuple[str, ...],
    ipam_driver: str,
    ipam_opt: tuple[str, ...],
    scope: str,
    name: str,
) -> None:
    """Create a network."""
    with usage_errors():
        body = network_create_body(
            name,
            driver=driver,
            subnets=subnet,
            gateways=gateway,
            ip_ranges=ip_range,
            internal=internal,
            attachable=attachable,
            ipv6=ipv6,
            labels=label,
            opts=opt,
            ipam_driver=ipam_driver,
            ipam_opts=ipam_opt,
            scope=scope,
        )
    click.echo(obj.client.create_network(body)["Id"])


@network.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'driver=bridge')")
@click.option("--format", "fmt", default="", help="Format output using a Go template, 'table' or 'json'")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@pass_cli
def ls(obj: CliContext, filters: tuple[str, ...], fmt: str, no_trunc: bool, quiet: bool) -> None:
    """List networks."""
    with usage_errors():
        parsed = parse_filters(filters)
    raw = sorted(obj.client.networks(parsed or None), key=lambda n: _natural_key(str(n.get("Name", ""))))
    rows = [NetworkRow(n, trunc=not no_trunc) for n in raw]
    if quiet:
        fmt = "{{.ID}}"
    text = render_rows(fmt, rows, NETWORK_TITLES, NETWORK_TABLE)
    if text:
        click.echo(text)


@network.command("inspect")
@click.option("-f", "--format", "fmt", default="", help="Format output using a Go template")
@click.option("-v", "--verbose", is_flag=True, help="Verbose output for diagnostics")
@click.argument("networks", metavar="NETWORK...", nargs=-1, required=True)
@pass_cli
def inspect(obj: CliContext, fmt: str, verbose: bool, networks: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    from skiff.cli.query import print_inspected

    print_inspected([(ref, lambda r: obj.client.inspect_network(r, verbose)) for ref in networks], fmt)


@network.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@click.argument("networks", metavar="NETWORK...", nargs=-1, required=True)
@pass_cli
def rm(obj: CliContext, force: bool, networks: tuple[str, ...]) -> None:
    """Remove one or more networks."""

    def remove(ref: str) -> None:
        try:
            obj.client.remove_network(ref)
        except NotFound:
            if not force:
                raise

    for_each(networks, remove)


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help="Provide filter values (e.g. 'until=<timestamp>')")
@pass_cli
def prune(obj: CliContext, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused networks."""
    with usage_errors():
        parsed = parse_filters(filters)
    if not force:
        click.confirm(
            "WARNING! This will remove all custom networks not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    deleted = obj.client.prune_networks(parsed or None).get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        click.echo("\n".join(deleted))


@network.command("connect")
@click.option("--alias", multiple=True, help="Add network-scoped alias for the container")
@click.option("--ip", help="IPv4 address (e.g., 10.201.0.10)")
@click.option("--ip6", help="IPv6 address (e.g., fd00:1::10)")
@click.option("--link", multiple=True, help="Add link to another container")
@click.argument("network_ref", metavar="NETWORK")
@click.argument("container")
@pass_cli
def connect(
    obj: CliContext,
    alias: tuple[str, ...],
    ip: str | None,
    ip6: str | None,
    link: tuple[str, ...],
    network_ref: str,
    container: str,
) -> None:
    """Connect a container to a network."""
    with usage_errors():
        config: dict[str, Any] = {
            "IPAMConfig": {
                "IPv4Address": parse_ipv4(ip) if ip else "",
                "IPv6Address": parse_ipv6(ip6) if ip6 else "",
            },
            "Links": [parse_link(v) for v in link] or None,
            "Aliases": list(alias) or None,
        }
    obj.client.connect_network(network_ref, container, config)


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect from a network")
@click.argument("network_ref", metavar="NETWORK")
@click.argument("container")
@pass_cli
def disconnect(obj: CliContext, force: bool, network_ref: str, container: str) -> None:
    """Disconnect a container from a network."""
    obj.client.disconnect_network(network_ref, container, force=force)


def register(group: click.Group) -> None:
    """Add ``network`` (with docker's ``list``/``remove`` aliases) to ``group``."""
    network.add_command(ls, "list")
    network.add_command(rm, "remove")
    group.add_command(network)
