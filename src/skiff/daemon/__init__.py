"""skiffd: configuration, wiring, listening sockets, signals, startup recovery."""
