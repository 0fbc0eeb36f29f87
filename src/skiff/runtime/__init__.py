"""The runtime layer: OCI spec generation, runc + conmon driving, logs, cgroup stats."""
