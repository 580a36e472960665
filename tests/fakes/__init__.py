"""Emulated platforms for the deploy targets: one module per target, each a context manager
yielding a ready target bound to its fake (moto, `responses`, kmock, a loopback registry)."""
