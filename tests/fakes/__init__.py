"""In-memory fakes of the project's own ports (adapters), for tests whose subject is a decision or an
orchestration rather than the AWS call. Each fake has a contract suite in tests/integration/test_*_contract.py
that runs the same tests on the real adapter (moto) and on the fake, refusals included."""
