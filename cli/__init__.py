"""The operator CLI, clay-pipeline: commands for a deployed stack and for the embedded local stack."""
