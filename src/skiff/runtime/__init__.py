"""The runtime layer: OCI spec generation, runc + conmon driving, logs, cgroup stats.

Public surface (what the engine uses)::

    generate_spec, BindFile, resolve_user, resolve_groups,
    linux_resources, effective_capabilities                  -- spec.py
    Runtime, RuntimeState, ExitStatus, AttachStream, ExecProcess -- runc.py
    iter_log, follow_log, LogLine                               -- logs.py
    read_stats, list_pids, top, oom_killed, remove_cgroup, CgroupStats -- cgroups.py
"""

from skiff.runtime.attach import AttachStream
from skiff.runtime.cgroups import CgroupStats, list_pids, oom_killed, read_stats, remove_cgroup, top
from skiff.runtime.exec import ExecProcess
from skiff.runtime.logs import LogLine, follow_log, iter_log
from skiff.runtime.runc import ExitStatus, Runtime, RuntimeState, rfc3339_nano
from skiff.runtime.spec import BindFile, generate_spec, resolve_groups, resolve_user

__all__ = [
    "AttachStream",
    "BindFile",
    "CgroupStats",
    "ExecProcess",
    "ExitStatus",
    "LogLine",
    "Runtime",
    "RuntimeState",
    "follow_log",
    "generate_spec",
    "iter_log",
    "list_pids",
    "oom_killed",
    "read_stats",
    "remove_cgroup",
    "resolve_groups",
    "resolve_user",
    "rfc3339_nano",
    "top",
]
