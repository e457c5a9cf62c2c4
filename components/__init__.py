"""AVS pipeline steps: each step is a plain function with an `avs` CLI subcommand."""
