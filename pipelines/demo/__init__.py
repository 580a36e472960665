"""The demo's story: a world that changes, traffic through the gateway, and the loop reacting."""
