"""The host: configuration, addresses, routes, neighbour cache, ingress and egress."""
