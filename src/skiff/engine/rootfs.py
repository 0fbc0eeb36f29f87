"""Per-container files skiffd writes and binds into the container: hostname, hosts, resolv.conf."""

from __future__ import annotations

import os
from pathlib import Path

from skiff.runtime.spec import BindFile
from skiff.types import ContainerSpec


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _host_resolv_conf() -> str:
    for candidate in ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"):
        try:
            text = Path(candidate).read_text()
        except OSError:
            continue
        # A stub resolver on the host's loopback is unreachable from a container's netns.
        lines = [ln for ln in text.splitlines() if not ln.startswith("nameserver 127.")]
        return "\n".join(lines) + "\n"
    return ""


def write_container_files(
    state_dir: Path, spec: ContainerSpec, hostname: str, ip_address: str = ""
) -> list[BindFile]:
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf for a container; return their binds."""
    state_dir.mkdir(parents=True, exist_ok=True)
    host_network = spec.host.network_mode == "host"
    fqdn = f"{hostname}.{spec.domainname}" if spec.domainname else hostname
    _atomic_write(state_dir / "hostname", hostname + "\n")
    if host_network:
        hosts = Path("/etc/hosts").read_text()
    else:
        hosts = (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
        if ip_address:
            hosts += (
                f"{ip_address}\t{fqdn} {hostname}\n" if fqdn != hostname else f"{ip_address}\t{hostname}\n"
            )
    for extra in spec.host.extra_hosts:
        name, _, addr = extra.partition(":")
        hosts += f"{addr}\t{name}\n"
    _atomic_write(state_dir / "hosts", hosts)
    resolv = _host_resolv_conf()
    if spec.host.dns or spec.host.dns_search or spec.host.dns_options:
        lines = [f"nameserver {ns}" for ns in spec.host.dns] or [
            ln for ln in resolv.splitlines() if ln.startswith("nameserver")
        ]
        if spec.host.dns_search:
            lines.append("search " + " ".join(spec.host.dns_search))
        if spec.host.dns_options:
            lines.append("options " + " ".join(spec.host.dns_options))
        resolv = "\n".join(lines) + "\n"
    _atomic_write(state_dir / "resolv.conf", resolv)
    return [
        BindFile(str(state_dir / "hostname"), "/etc/hostname"),
        BindFile(str(state_dir / "hosts"), "/etc/hosts"),
        BindFile(str(state_dir / "resolv.conf"), "/etc/resolv.conf"),
    ]
