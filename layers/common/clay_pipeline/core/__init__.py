"""The pure core: decisions on plain data. Imports no AWS or HTTP library; clocks are passed in."""
