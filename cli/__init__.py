"""The ``modelyard`` command: parsing, printing and exit codes; the floors below do the work."""
