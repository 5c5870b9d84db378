"""What the commands share: which stack they work on (target), a lead's story (trace), selecting dead letters,
and reading lead files for `send` and `run` (csv_import)."""
