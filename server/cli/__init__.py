"""The `aion` command line: the composition root for commands."""
