"""The ``local`` deploy target: ``bentoml serve`` processes on loopback ports, a state file shared
by every shell, and a supervisor that restarts crashed servers.

Modules: ``state`` (the JSON file and its lock), ``process`` (start, wait, stop one server),
``target`` (:class:`LocalTarget`), ``supervisor`` (restart loop and its pure decision).
"""
