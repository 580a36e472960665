"""The kernel: settings, base errors, logging set-up, the state folder and the data contract.

Every other package imports from here; this package imports none of them.
"""

__version__ = "0.1.0"
