"""Subcommands of the ``verifier`` command line, one module each."""
