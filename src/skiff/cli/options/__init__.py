"""Parsing docker's flag values (sizes, durations, ports, mounts...) and building the create body."""
