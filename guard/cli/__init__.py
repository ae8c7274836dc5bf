"""The `guard` command, one module per group of subcommands."""
