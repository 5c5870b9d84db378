"""Adapters: one module per external system (DynamoDB tables, SQS, outbound HTTP, Clay, each destination)."""
