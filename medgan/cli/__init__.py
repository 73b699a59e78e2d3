"""The ``medgan`` command line: thin sub-commands over the Python API."""
