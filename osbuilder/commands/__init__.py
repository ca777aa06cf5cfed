"""Subcommands of the `osbuilder` command line, one module per group."""
