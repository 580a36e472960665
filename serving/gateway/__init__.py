"""The model gateway: one entrance to every served model (keys, limits, routing, log)."""
