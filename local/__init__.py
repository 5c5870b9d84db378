"""The embedded local stack: runs the whole pipeline on one machine without Docker or AWS."""
