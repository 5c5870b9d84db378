"""In-memory fakes of the project's own ports (never of AWS services), each held to the real adapter by a
contract suite that runs the same tests against both."""
