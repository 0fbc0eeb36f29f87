"""Container networking: namespaces, CNI plugins, iptables, published ports, embedded DNS."""
