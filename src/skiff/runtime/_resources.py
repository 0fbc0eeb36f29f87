"""``linux.resources`` from HostConfig, with Docker's validation and defaults."""

from __future__ import annotations

from typing import Any

from skiff.errors import InvalidArgument
from skiff.runtime._devices import block_device_numbers
from skiff.types import HostConfig, ThrottleDevice

MIN_MEMORY = 6 * 1024 * 1024  # moby: "Minimum memory limit allowed is 6MB"
CPU_PERIOD_DEFAULT = 100_000


def linux_resources(host: HostConfig, *, swap_supported: bool = True) -> dict[str, Any]:
    """Build ``linux.resources`` except ``devices`` (the caller owns device rules)."""
    res: dict[str, Any] = {}
    memory = _memory(host, swap_supported)
    if memory:
        res["memory"] = memory
    cpu = _cpu(host)
    if cpu:
        res["cpu"] = cpu
    if host.pids_limit > 0:
        res["pids"] = {"limit": host.pids_limit}
    blkio = _block_io(host)
    if blkio:
        res["blockIO"] = blkio
    return res


def _memory(host: HostConfig, swap_supported: bool) -> dict[str, Any]:
    mem: dict[str, Any] = {}
    if host.memory < 0 or host.memory_reservation < 0:
        raise InvalidArgument("memory limits must not be negative")
    if 0 < host.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if host.memory > 0:
        mem["limit"] = host.memory
    if host.memory_swap != 0:
        if host.memory == 0 and host.memory_swap > 0:
            raise InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
            )
        if host.memory_swap > 0 and host.memory_swap < host.memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        if host.memory_swap < -1:
            raise InvalidArgument("memory swap must be -1 (unlimited) or a size in bytes")
    if swap_supported and host.memory > 0:
        # Docker: swap unset (0) with a memory limit means memory+swap = 2 x memory.
        mem["swap"] = host.memory * 2 if host.memory_swap == 0 else host.memory_swap
    if host.memory_reservation > 0:
        if host.memory > 0 and host.memory_reservation > host.memory:
            raise InvalidArgument(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
            )
        mem["reservation"] = host.memory_reservation
    if host.oom_kill_disable:
        mem["disableOOMKiller"] = True
    return mem


def _cpu(host: HostConfig) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    if host.nano_cpus < 0:
        raise InvalidArgument("nano_cpus must not be negative")
    if host.nano_cpus > 0:
        if host.cpu_period > 0:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if host.cpu_quota > 0:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        cpu["period"] = CPU_PERIOD_DEFAULT
        cpu["quota"] = host.nano_cpus * CPU_PERIOD_DEFAULT // 1_000_000_000
    else:
        if host.cpu_period != 0 and not 1000 <= host.cpu_period <= 1_000_000:
            raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s")
        if 0 < host.cpu_quota < 1000:
            raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if host.cpu_period > 0:
            cpu["period"] = host.cpu_period
        if host.cpu_quota != 0:
            cpu["quota"] = host.cpu_quota
    if host.cpu_shares < 0:
        raise InvalidArgument("cpu shares must not be negative")
    if host.cpu_shares > 0:
        cpu["shares"] = host.cpu_shares
    if host.cpuset_cpus:
        cpu["cpus"] = host.cpuset_cpus
    if host.cpuset_mems:
        cpu["mems"] = host.cpuset_mems
    return cpu


def _block_io(host: HostConfig) -> dict[str, Any]:
    blkio: dict[str, Any] = {}
    if host.blkio_weight:
        if not 10 <= host.blkio_weight <= 1000:
            raise InvalidArgument("Range of blkio weight is from 10 to 1000")
        blkio["weight"] = host.blkio_weight
    for key, devices in (
        ("throttleReadBpsDevice", host.blkio_device_read_bps),
        ("throttleWriteBpsDevice", host.blkio_device_write_bps),
        ("throttleReadIOPSDevice", host.blkio_device_read_iops),
        ("throttleWriteIOPSDevice", host.blkio_device_write_iops),
    ):
        if devices:
            blkio[key] = [_throttle(d) for d in devices]
    return blkio


def _throttle(device: ThrottleDevice) -> dict[str, int]:
    if device.rate < 0:
        raise InvalidArgument(f"invalid rate for device {device.path}: must be a positive integer")
    major, minor = block_device_numbers(device.path)
    return {"major": major, "minor": minor, "rate": device.rate}
