"""What the operator commands (trace, dlq, destination, stale) read and change, against any stack."""
