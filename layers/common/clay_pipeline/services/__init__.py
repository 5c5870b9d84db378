"""Services: orchestrate the core and the adapters for one function each."""
