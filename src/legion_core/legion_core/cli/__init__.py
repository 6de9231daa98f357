"""The `legion` command line: one root parser, sub-commands contributed by each installed package."""
