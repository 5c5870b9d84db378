"""template.yaml against the code: handlers, environment and least-privilege policies.

The policy check runs each function through scenarios that reach every AWS call it can make
(success, duplicates, waits, permanent failures, dependency failures) with secrets only in
Secrets Manager, records every botocore call, and compares the set with the IAM actions the
template grants it: nothing missing (it would fail in AWS) and nothing unused (not least
privilege).
"""

from __future__ import annotations

import inspect
import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from clay_pipeline import config
from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.batch_records import hour_bucket
from clay_pipeline.adapters.dynamodb import to_item
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.routines import PollMessage
from clay_pipeline.services.routines import RunStore
from local.apigw import http_event
from local.aws import Provisioned
from local.clay_run_webhooks import sign
from local.http_stub import Reply, StubServer
from local.sqs_events import sqs_event, sqs_record
from local.template import Resolver, functions, load_template, parameter_defaults, resources_of_type
from tests.conftest import LambdaContextStub

pytestmark = pytest.mark.integration

SERVICES = ("dynamodb", "sqs", "secretsmanager")
# IAM authorises these API operations with another operation's action.
IAM_ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Variables every function may carry that no Settings class reads.
RUNTIME_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_LOGGER_LOG_EVENT",
    "POWERTOOLS_TRACE_DISABLED",
    "PYDANTIC_DISABLE_PLUGINS",
    "CONFIG_SECRET_ID",
}


def settings_class(logical_id: str) -> type[config.Settings]:
    source = functions()[logical_id].module_path.read_text()
    match = re.search(r"(\w+Settings)\.from_env\(\)", source)
    assert match, f"{logical_id} does not validate its settings at cold start"
    settings = getattr(config, match.group(1))
    assert issubclass(settings, config.Settings)
    return settings


def granted_statements(logical_id: str, parameters: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The statements granted to the function when deployed with these parameters (else the defaults): its
    Policies, and the AWS::IAM::Policy resources on the role SAM creates for it whose Condition holds."""
    resolver = Resolver(refs={**parameter_defaults(), **(parameters or {})})
    documents = list(functions()[logical_id].policies)
    for resource in resources_of_type("AWS::IAM::Policy").values():
        if {"Ref": f"{logical_id}Role"} not in resource["Properties"]["Roles"]:
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue  # not created with these parameters
        documents.append(resource["Properties"]["PolicyDocument"])
    return [statement for policy in resolver.resolve(documents) for statement in policy["Statement"]]


def granted_actions(logical_id: str, parameters: dict[str, str] | None = None) -> set[str]:
    actions: set[str] = set()
    for statement in granted_statements(logical_id, parameters):
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] != "*", f"{logical_id}: {statement.get('Sid')} grants every resource"
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in listed), f"{logical_id}: wildcard action"
        actions.update(listed)
    return actions


SECRET_RESOURCE_REFS = {resource: f"local-{resource}" for resource in config.SECRET_RESOURCES}  # Resolver's Ref


def readable_secrets(logical_id: str, parameters: dict[str, str] | None = None) -> set[str]:
    """The secret resources the function's role may GetSecretValue on, deployed with these parameters."""
    by_ref = {ref: resource for resource, ref in SECRET_RESOURCE_REFS.items()}
    readable: set[str] = set()
    for statement in granted_statements(logical_id, parameters):
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(action.startswith("secretsmanager:") for action in listed):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            readable.update(by_ref.get(resource, resource) for resource in resources)
    return readable


def config_secret_of(logical_id: str, parameters: dict[str, str] | None = None) -> str:
    """The secret resource the function's CONFIG_SECRET_ID names ('' when it has none)."""
    resolver = Resolver(refs={**parameter_defaults(), **(parameters or {})})
    value = functions()[logical_id].environment.get("CONFIG_SECRET_ID")
    by_ref = {ref: resource for resource, ref in SECRET_RESOURCE_REFS.items()}
    return by_ref[resolver.resolve(value)] if value is not None else ""


# ------------------------------------------------------------------------------------- handlers and environment
@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_handler_exists_and_is_callable(load_function_without_aws: Any, logical_id: str) -> None:
    # A cold start makes no AWS call (the secrets are in the environment): no emulator needed
    module = load_function_without_aws(
        logical_id, **{name: "placeholder-0123456789abcdef-0123456789" for name in config.SECRET_NAMES}
    )
    assert functions()[logical_id].handler == "app.lambda_handler"
    assert callable(module.lambda_handler)
    assert list(inspect.signature(module.lambda_handler).parameters) == ["event", "context"]


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_every_setting_is_set_by_the_template_or_has_a_default(logical_id: str) -> None:
    environment = functions()[logical_id].environment
    for name, field in settings_class(logical_id).model_fields.items():
        if field.is_required():
            assert name.upper() in environment, f"{logical_id} needs {name.upper()} but the template does not set it"


@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_template_sets_only_variables_the_function_reads(logical_id: str) -> None:
    readable = {name.upper() for name in settings_class(logical_id).model_fields} | RUNTIME_VARIABLES
    unused = set(functions()[logical_id].environment) - readable
    assert not unused, f"{logical_id}: the template sets {sorted(unused)} but nothing reads them"


def test_every_max_receive_count_the_code_reads_is_its_queues_redrive_count() -> None:
    # The handlers re-queue a waiting message as a fresh copy on its last receive before the DLQ: they
    # must know the count SQS dead-letters at, so `<X>_QUEUE_MAX_RECEIVE_COUNT` (set by the template, or
    # the setting's default) must equal the maxReceiveCount of the queue `<X>_QUEUE_URL` names.
    queues = resources_of_type("AWS::SQS::Queue")
    checked = set()
    for logical_id, spec in functions().items():
        for name, field in settings_class(logical_id).model_fields.items():
            if not name.endswith("_queue_max_receive_count"):
                continue
            queue = spec.environment[name.upper().replace("_MAX_RECEIVE_COUNT", "_URL")]["Ref"]
            redrive = queues[queue]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
            read = int(spec.environment.get(name.upper(), field.default))
            assert read == redrive, f"{logical_id} reads {name.upper()}={read}; {queue} dead-letters at {redrive}"
            checked.add((logical_id, queue))
    assert checked == {("SenderFunction", "LeadQueue"), ("RouterFunction", "RoutingQueue")}


def test_no_secret_is_a_template_parameter_or_environment_value() -> None:
    template = load_template()
    parameters = {name.upper() for name in template.get("Parameters", {})}
    for logical_id, spec in functions().items():
        leaked = config.SECRET_NAMES & set(spec.environment)
        assert not leaked, f"{logical_id} puts secrets in its environment: {sorted(leaked)}"
    assert not {name.replace("_", "") for name in config.SECRET_NAMES} & parameters


# ------------------------------------------------------------------------------------- policies
class CallRecorder:
    paused = False  # setup done through the library (e.g. a run record) is not the function's

    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.secrets_read: set[str] = set()  # SecretIds of GetSecretValue

    def parameters(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not CallRecorder.paused and model.name == "GetSecretValue":
            self.secrets_read.add(str(params["SecretId"]))

    def __call__(self, model: Any, **_: Any) -> None:
        if CallRecorder.paused:
            return
        action = f"{model.service_model.signing_name}:{model.name}"
        self.actions.add(IAM_ACTION_OF.get(action, action))


@contextmanager
def not_recorded() -> Iterator[None]:
    CallRecorder.paused = True
    try:
        yield
    finally:
        CallRecorder.paused = False


@contextmanager
def recorded_calls() -> Iterator[CallRecorder]:
    recorder = CallRecorder()
    clients = [client(service) for service in SERVICES]
    for aws_client in clients:
        aws_client.meta.events.register("before-call.*.*", recorder, unique_id="policy-recorder")
        aws_client.meta.events.register(
            "before-parameter-build.*.*", recorder.parameters, unique_id="policy-recorder-params"
        )
    try:
        yield recorder
    finally:
        for aws_client in clients:
            aws_client.meta.events.unregister("before-call.*.*", unique_id="policy-recorder")
            aws_client.meta.events.unregister("before-parameter-build.*.*", unique_id="policy-recorder-params")


def setup_client(service: str) -> Any:
    """A client of the test's own, so setup calls are not counted as the function's."""
    return boto3.session.Session().client(service)


def put_secrets(stack: Provisioned, values: dict[str, str]) -> None:
    """Each value into the one secret that holds it as deployed (config.SECRET_RESOURCES), every other
    secret emptied: a function reading a name from the wrong secret finds nothing."""
    for resource, names in config.SECRET_RESOURCES.items():
        held = {name: value for name, value in values.items() if name in names}
        setup_client("secretsmanager").put_secret_value(
            SecretId=stack.resolver.refs[resource], SecretString=json.dumps(held)
        )
    config.clear_secret_cache()


@pytest.fixture
def secrets_only_in_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)


def queue_arn(stack: Provisioned, logical_id: str) -> str:
    return str(stack.resolver.attributes[(logical_id, "Arn")])


def callback_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    put_secrets(stack, {"CALLBACK_SECRETS": "policy-secret-0123456789abcdef0123456789"})
    app = load("CallbackFunction")
    event = http_event(
        "POST",
        "/clay/callback",
        json.dumps({"lead_id": "p1", "email": "p@acme.com"}),
        {"x-clay-signature": "policy-secret-0123456789abcdef0123456789"},
    )
    assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 200
    assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 200  # duplicate
    setup_client("sqs").delete_queue(QueueUrl=stack.queue_urls["RoutingQueue"])  # failure releases the lock
    event = http_event(
        "POST",
        "/clay/callback",
        json.dumps({"lead_id": "p2"}),
        {"x-clay-signature": "policy-secret-0123456789abcdef0123456789"},
    )
    assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 503
    # jwt mode: a failed token request counts against its caller, a success clears the count
    put_secrets(
        stack,
        {
            "CALLBACK_SECRETS": "policy-secret-0123456789abcdef0123456789",
            "CALLBACK_JWT_USERS": "clay:policy-password-0123456789",
        },
    )
    app = load("CallbackFunction", CALLBACK_AUTH_MODE="jwt")
    for password, status in (("wrong", 401), ("policy-password-0123456789", 200)):
        body = json.dumps({"username": "clay", "password": password})
        event = http_event("POST", "/clay/token", body, {"content-type": "application/json"})
        assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == status


def intake_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    key = "policy-key-0123456789abcdef0123456789"
    put_secrets(stack, {"INTAKE_API_KEYS": key})
    app = load("IntakeFunction")
    body = json.dumps({"leads": [{"email": f"p{i}@acme.com"} for i in range(12)]})
    response = app.lambda_handler(http_event("POST", "/leads", body, {"x-api-key": key}), LambdaContextStub())
    assert response["statusCode"] == 202


def sender_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    with StubServer() as clay:
        put_secrets(stack, {"CLAY_WEBHOOK_URLS": f"{clay.url}/hook-1", "CLAY_WEBHOOK_AUTH_TOKEN": "policy-token"})
        app = load("SenderFunction", CLAY_RETRY_ATTEMPTS="0", CLAY_RETRY_BACKOFF_SECONDS="0")
        arn = queue_arn(stack, "LeadQueue")
        lead = json.dumps({"email": "s1@acme.com"})
        clay.script("/hook-1", Reply(200), Reply(429, headers={"retry-after": "600"}), Reply(500))
        records = [
            sqs_record(lead, arn),  # sent
            sqs_record(lead, arn),  # already sent: skipped
            sqs_record("{not json", arn),  # dead-lettered
            sqs_record(json.dumps({"email": "s2@acme.com"}), arn, receive_count=9),  # 429: re-queued fresh copy
        ]
        app.lambda_handler(sqs_event(records), LambdaContextStub(remaining_ms=60_000))
        clay.script("/hook-1", Reply(429, headers={"retry-after": "600"}))
        throttled = sqs_event([sqs_record(json.dumps({"email": "s3@acme.com"}), arn)])
        app.lambda_handler(throttled, LambdaContextStub(remaining_ms=60_000))  # change visibility
        # the routine path: a run started, recorded and its first poll queued; a lead already sent skipped
        put_secrets(stack, {"CLAY_API_KEY": "policy-api-key"})
        routine = load(
            "SenderFunction",
            CLAY_ENRICHMENT_PATH="routine",
            CLAY_API_BASE_URL=clay.url,
            CLAY_ROUTINE_ID="r1",
            CONFIG_SECRET_ID=stack.resolver.refs[config_secret_of("SenderFunction", ROUTINE)],
        )
        clay.script("/routines/r1/run", Reply(202, {"routine_run_id": "run-s1", "status": "in_progress"}))
        records = [sqs_record(json.dumps({"email": "s4@acme.com"}), arn), sqs_record(lead, arn)]
        answer = routine.lambda_handler(sqs_event(records), LambdaContextStub(remaining_ms=60_000))
        assert answer == {"batchItemFailures": []}


def router_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    with StubServer() as sinks:
        put_secrets(
            stack,
            {
                "OUTREACH_WEBHOOK_URL": f"{sinks.url}/outreach",
                "SLACK_WEBHOOK_URL": f"{sinks.url}/slack",
                "NURTURE_WEBHOOK_URL": f"{sinks.url}/nurture",
                "ZAPIER_WEBHOOK_URL": f"{sinks.url}/zap",
                "HUBSPOT_ACCESS_TOKEN": "policy-hubspot",
            },
        )
        app = load("RouterFunction", HUBSPOT_BASE_URL=sinks.url)
        arn = queue_arn(stack, "RoutingQueue")

        def message(lead_id: str, score: int) -> str:
            lead = {"lead_id": lead_id, "email": f"{lead_id}@acme.com", "icp_score": score}
            return json.dumps(
                {
                    "callback_id": f"{lead_id}#h",
                    "lead_key": lead_id,
                    "lead": lead,
                    "received_at": "2026-11-22T00:00:00+00:00",
                }
            )

        sinks.script("/zap", Reply(400, {"error": "bad"}))  # permanent: dead-lettered with reasons
        event = sqs_event([sqs_record(message("r1", 95), arn), sqs_record(message("r2", 20), arn)])
        app.lambda_handler(event, LambdaContextStub(remaining_ms=60_000))
        app.lambda_handler(event, LambdaContextStub(remaining_ms=60_000))  # retry: already delivered
        # another invocation holds r3's lease: the record waits (visibility), or re-queues near maxReceiveCount
        setup_client("dynamodb").put_item(
            TableName=stack.table_names["LeadsTable"],
            Item={"lead_key": {"S": "r3"}, "lease_until": {"N": "9999999999"}, "lease_owner": {"S": "other"}},
        )
        url = stack.queue_urls["RoutingQueue"]
        setup_client("sqs").send_message(QueueUrl=url, MessageBody=message("r3", 85))
        [received] = setup_client("sqs").receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
        waiting = sqs_record(received["Body"], arn, receipt_handle=received["ReceiptHandle"])
        app.lambda_handler(sqs_event([waiting]), LambdaContextStub(remaining_ms=60_000))
        last = sqs_record(message("r3", 85), arn, receive_count=4)
        app.lambda_handler(sqs_event([last]), LambdaContextStub(remaining_ms=60_000))
        # HubSpot's daily limit: the router pauses HubSpot (an entry in the pause switch)
        daily = Reply(429, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"})
        sinks.script("/crm/v3/objects/contacts/batch/read", daily)
        app.lambda_handler(sqs_event([sqs_record(message("r4", 75), arn)]), LambdaContextStub(remaining_ms=60_000))


def sweeper_scenarios(stack: Provisioned, load: Callable[..., Any], requeue: bool = True) -> None:
    # a batch sent 90 minutes ago: one lead called back since, one not (stale, its body kept: re-queued once)
    state, leads = stack.table_names["StateTable"], stack.table_names["LeadsTable"]
    sent_at = int(time.time()) - 5400
    batch = {"called": {"w": 0, "t": sent_at, "r": 1, "p": 1}, "silent": {"w": 0, "t": sent_at, "r": 1, "p": 1}}
    bodies = zlib.compress(json.dumps({"silent": json.dumps({"lead_id": "silent", "email": "s@acme.com"})}).encode())
    record = {"pk": "sent#b1", "sent_bucket": hour_bucket(sent_at), "sent_at": sent_at}
    setup_client("dynamodb").put_item(TableName=state, Item=to_item({"pk": "dedupe#silent", "status": "sent"}))
    called_back = {"lead_key": "called", "received_at": datetime.now(UTC).isoformat(), "callbacks": 1}
    setup_client("dynamodb").put_item(TableName=leads, Item=to_item(called_back))
    # and one called back an hour ago whose callback died before queueing it (its claim still in place)
    batch["unqueued"] = {"w": 0, "t": sent_at, "r": 1, "p": 1}
    claimed_at = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
    unqueued = {
        "lead_key": "unqueued",
        "received_at": claimed_at,
        "routing_status": "received",
        "callback_id": "unqueued#v1",
        "enrichment": {"lead_id": "unqueued", "email": "u@acme.com"},
        "pending_v1": claimed_at,
        "callbacks": 1,
    }
    setup_client("dynamodb").put_item(TableName=leads, Item=to_item(unqueued))
    setup_client("dynamodb").put_item(
        TableName=state, Item={**to_item({**record, "leads": batch}), "bodies": {"B": bodies}}
    )
    app = load("StaleSweeperFunction", STALE_AFTER_HOURS="1", STALE_REQUEUE=str(requeue).lower())
    report = app.lambda_handler({}, LambdaContextStub(remaining_ms=300_000))
    assert (report["stale"], report["requeued"], report["unqueued_routed"]) == (1, int(requeue), 1)


def signed_run_webhook(run_id: str, secret: str) -> dict[str, Any]:
    body = json.dumps({"webhookId": "wh_p", "createdAt": "2026-11-22T00:00:00Z", "data": {"routine_run_id": run_id}})
    return http_event("POST", "/clay/routine-webhook", body, {"x-clay-signature": sign(secret, body.encode())})


def run_webhook_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    put_secrets(stack, {"CLAY_WEBHOOK_SIGNING_SECRETS": "whsec_policy-0123456789abcdef0123456789"})
    app = load("RunWebhookFunction")
    event = signed_run_webhook("run-w1", "whsec_policy-0123456789abcdef0123456789")
    assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 200
    assert app.lambda_handler(event, LambdaContextStub())["statusCode"] == 200  # replay: a duplicate
    setup_client("sqs").delete_queue(QueueUrl=stack.queue_urls["RunPollQueue"])  # failure deletes the mark
    failing = signed_run_webhook("run-w2", "whsec_policy-0123456789abcdef0123456789")
    assert app.lambda_handler(failing, LambdaContextStub())["statusCode"] == 503


def run_collector_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    with StubServer() as clay:
        put_secrets(stack, {"CLAY_API_KEY": "policy-api-key"})
        with not_recorded():
            runs = RunStore(StateStore(stack.table_names["StateTable"]))
            runs.record("run-c1", "r1", {"lc1": {"email": "c1@acme.com"}, "lc2": {"email": "c2@acme.com"}})
            runs.record("run-c2", "r1", {"lc3": {"email": "c3@acme.com"}})
        items = [
            {"id": "lc1", "status": "complete", "result": {"icp_score": "85"}},
            {"id": "lc2", "status": "failed", "error": {"message": "no data"}},
        ]
        complete = {"routine_run_id": "run-c1", "status": "complete", "total": 2, "finished": 2, "data": items}
        clay.script("/routines/run/run-c1/results", Reply(200, complete))
        in_progress = {"routine_run_id": "run-c2", "status": "in_progress", "total": 1, "finished": 0}
        clay.script("/routines/run/run-c2/results", Reply(202, in_progress))
        app = load("RunCollectorFunction", CLAY_API_BASE_URL=clay.url)
        arn = queue_arn(stack, "RunPollQueue")
        polls = [sqs_record(json.dumps(PollMessage(run_id).to_message()), arn) for run_id in ("run-c1", "run-c2")]
        answer = app.lambda_handler(sqs_event(polls), LambdaContextStub(remaining_ms=60_000))
        assert answer == {"batchItemFailures": []}


def secret_seed_scenarios(stack: Provisioned, load: Callable[..., Any]) -> None:
    """The upgrade: values only in the shared secret are copied into the per-concern ones (read, then write)."""
    put_secrets(stack, {})
    with not_recorded():
        legacy = {"INTAKE_API_KEYS": "policy-key-0123456789abcdef0123456789", "HUBSPOT_ACCESS_TOKEN": "pat-p"}
        setup_client("secretsmanager").put_secret_value(SecretId=stack.secret_id, SecretString=json.dumps(legacy))
    resource = load_template()["Resources"]["SecretSeed"]
    app = load("SecretSeedFunction")
    with StubServer() as cloudformation:
        event = {
            "RequestType": "Create",
            "ResponseURL": f"{cloudformation.url}/response",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/policy/1",
            "RequestId": "policy-1",
            "LogicalResourceId": "SecretSeed",
            "ResourceType": "Custom::SecretSeed",
            "ResourceProperties": stack.resolver.resolve(resource["Properties"]),
        }
        app.lambda_handler(event, LambdaContextStub())
        assert json.loads(cloudformation.requests[0].body)["Status"] == "SUCCESS"


SCENARIOS = {
    "SecretSeedFunction": secret_seed_scenarios,
    "CallbackFunction": callback_scenarios,
    "IntakeFunction": intake_scenarios,
    "SenderFunction": sender_scenarios,
    "RouterFunction": router_scenarios,
    "StaleSweeperFunction": sweeper_scenarios,
    "RunWebhookFunction": run_webhook_scenarios,
    "RunCollectorFunction": run_collector_scenarios,
}
ROUTINE = {"ClayEnrichmentPath": "routine"}
# The parameters a scenario's function is deployed with, where they change its policy.
SCENARIO_PARAMETERS = {"StaleSweeperFunction": {"StaleRequeue": "true"}}


def test_every_function_has_a_policy_scenario() -> None:
    assert set(SCENARIOS) == set(functions())


@pytest.mark.parametrize("logical_id", sorted(functions()))
@pytest.mark.usefixtures("secrets_only_in_secrets_manager")
def test_policy_allows_exactly_the_calls_the_function_makes(
    stack: Provisioned, load_function: Any, logical_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run of the function's scenarios, three checks: its AWS calls against its policy, the secret names it
    reads against what its own secret holds, and the secrets it reads against the one its CONFIG_SECRET_ID names."""
    # GIVEN every AWS call and every secret read by name recorded WHEN the function runs its policy scenarios
    read: set[str] = set()
    real_secret = config.secret

    def recording_secret(name: str) -> str:
        read.add(name)
        return real_secret(name)

    monkeypatch.setattr(config, "secret", recording_secret)
    with recorded_calls() as calls:
        SCENARIOS[logical_id](stack, load_function)
    granted = granted_actions(logical_id, SCENARIO_PARAMETERS.get(logical_id))
    made = calls.actions
    assert made - granted == set(), f"{logical_id} makes calls its policy does not allow"
    assert granted - made == set(), f"{logical_id} is granted actions it never uses"
    # THEN each name it read is one the secret its CONFIG_SECRET_ID names holds (config.SECRET_RESOURCES)
    paths_read = [{}, ROUTINE] if logical_id == "SenderFunction" else [SCENARIO_PARAMETERS.get(logical_id, {})]
    held = set().union(*(config.SECRET_RESOURCES.get(config_secret_of(logical_id, path), set()) for path in paths_read))
    assert read <= held, f"{logical_id} reads {sorted(read - held)} from a secret its role cannot read"
    assert bool(read) == bool(held)
    if logical_id == SEED:
        return  # it reads every secret by design: test_the_seed_reads_the_shared_secret_and_fills_only_the_others
    # and it read only the secret its CONFIG_SECRET_ID names (on each path the scenario runs)
    paths = [SCENARIO_PARAMETERS.get(logical_id), *([ROUTINE] if logical_id == "SenderFunction" else [])]
    own = {
        stack.resolver.refs[config_secret_of(logical_id, path)] for path in paths if config_secret_of(logical_id, path)
    }
    assert calls.secrets_read <= own, f"{logical_id} read secrets other than its own"


# ------------------------------------------------------------------------------------- one secret per concern
SEED = "SecretSeedFunction"  # the upgrade's custom resource provider: reads the shared secret, fills the others


def secret_grants(logical_id: str, parameters: dict[str, str]) -> dict[str, set[str]]:
    """The secretsmanager actions the function's role is granted on each secret resource."""
    by_ref = {ref: resource for resource, ref in SECRET_RESOURCE_REFS.items()}
    grants: dict[str, set[str]] = {}
    for statement in granted_statements(logical_id, parameters):
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            grants.setdefault(by_ref.get(resource, resource), set()).update(
                action for action in listed if action.startswith("secretsmanager:")
            )
    return grants


def deployed_secrets(parameters: dict[str, str]) -> set[str]:
    resolver = Resolver(refs={**parameter_defaults(), **parameters})
    return {
        logical_id
        for logical_id, resource in resources_of_type("AWS::SecretsManager::Secret").items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }


@pytest.mark.parametrize("path", [{}, ROUTINE], ids=["table", "routine"])
def test_the_seed_reads_the_shared_secret_and_fills_only_the_others(path: dict[str, str]) -> None:
    # GIVEN the stack deployed on this path
    shared = config.SHARED_SECRET_RESOURCE
    others = deployed_secrets(path) - {shared}
    # THEN the seed may only read the shared secret, and read and write each per-concern one deployed
    assert secret_grants(SEED, path) == {
        shared: {"secretsmanager:GetSecretValue"},
        **{secret: {"secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"} for secret in others},
    }
    # AND the custom resource fills each of them with exactly the names config.SECRET_RESOURCES gives it
    resource = load_template()["Resources"]["SecretSeed"]
    properties = Resolver(refs={**parameter_defaults(), **path}).resolve(resource["Properties"])
    assert properties["SharedSecret"] == SECRET_RESOURCE_REFS[shared]
    by_ref = {ref: resource for resource, ref in SECRET_RESOURCE_REFS.items()}
    filled = {by_ref[target["SecretId"]]: set(target["Names"]) for target in properties["Secrets"]}
    assert filled == {secret: set(config.SECRET_RESOURCES[secret]) for secret in others}


@pytest.mark.parametrize("path", [{}, ROUTINE], ids=["table", "routine"])
@pytest.mark.parametrize("logical_id", sorted(functions()))
def test_each_function_reading_a_per_concern_secret_waits_for_the_seed(logical_id: str, path: dict[str, str]) -> None:
    # GIVEN the secret the function's CONFIG_SECRET_ID names on this path
    own = config_secret_of(logical_id, path)
    depends_on = load_template()["Resources"][logical_id].get("DependsOn", [])
    depends_on = [depends_on] if isinstance(depends_on, str) else depends_on
    # THEN it is updated only after SecretSeed filled that secret (a new stack's, or one upgraded from the shared)
    switches = own not in ("", config.SHARED_SECRET_RESOURCE)
    assert ("SecretSeed" in depends_on) == switches, logical_id
    # AND on the upgrade it moves to a new role with its new secret in one step (the role's Path is create-only,
    # so a changed one replaces the role; the old one, still allowed the shared secret, goes in the cleanup)
    if switches:
        assert functions()[logical_id].policies and "RolePath" in load_template()["Resources"][logical_id]["Properties"]


@pytest.mark.parametrize("path", [{}, ROUTINE], ids=["table", "routine"])
@pytest.mark.parametrize("logical_id", sorted(set(functions()) - {SEED}))
def test_each_function_may_read_only_the_secret_its_config_secret_id_names(
    logical_id: str, path: dict[str, str]
) -> None:
    own = config_secret_of(logical_id, path)
    assert readable_secrets(logical_id, path) == ({own} if own else set())


def test_the_intake_function_cannot_read_the_routers_or_clays_secrets() -> None:
    for path in ({}, ROUTINE):
        readable = readable_secrets("IntakeFunction", path)
        assert readable == {"IntakeSecret"}
        assert {"DestinationSecret", "ClayApiSecret", "ClayWebhookSecret", "ConfigSecret"}.isdisjoint(readable)


def test_every_secret_resource_of_the_mapping_is_in_the_template_with_an_output() -> None:
    template = load_template()
    assert set(resources_of_type("AWS::SecretsManager::Secret")) == set(config.SECRET_RESOURCES)
    assert {f"{resource}Name" for resource in config.SECRET_RESOURCES} <= set(template["Outputs"])


@pytest.mark.usefixtures("secrets_only_in_secrets_manager")
def test_the_sweeper_without_requeue_may_neither_queue_leads_nor_delete_marks(
    stack: Provisioned, load_function: Any
) -> None:
    # GIVEN the template's default, StaleRequeue=false WHEN the sweeper finds a stale lead
    with recorded_calls() as calls:
        sweeper_scenarios(stack, load_function, requeue=False)
    # THEN its policy is exactly what it called, without the re-queue's two actions: it may delete no mark and
    # send to no queue but RoutingQueue (a called-back lead whose callback died before queueing it)
    granted = granted_actions("StaleSweeperFunction")
    assert calls.actions == granted
    assert "dynamodb:DeleteItem" not in granted
    sends = [s for s in granted_statements("StaleSweeperFunction") if "sqs:SendMessage" in s["Action"]]
    assert [statement["Resource"] for statement in sends] == ["arn:aws:local:::RoutingQueue"]


# ------------------------------------------------------------------------------------- capacity mode
def test_tables_default_to_on_demand_without_provisioned_throughput(stack: Provisioned) -> None:
    for name in stack.table_names.values():
        table = setup_client("dynamodb").describe_table(TableName=name)["Table"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_provisioned_mode_sets_capacity_and_auto_scales_reads_and_writes_of_both_tables() -> None:
    # GIVEN the template deployed with TableBillingMode=PROVISIONED
    template = load_template()
    resolver = Resolver(refs={**parameter_defaults(template), "TableBillingMode": "PROVISIONED"})
    tables = resources_of_type("AWS::DynamoDB::Table", template)
    # THEN each table starts at the minimum capacities
    for spec in tables.values():
        properties = resolver.resolve(spec["Properties"])
        assert properties["BillingMode"] == "PROVISIONED"
        assert properties["ProvisionedThroughput"] == {"ReadCapacityUnits": "2", "WriteCapacityUnits": "5"}
    # AND auto scaling tracks 70% utilisation of reads and writes on both, only in that mode
    targets = resources_of_type("AWS::ApplicationAutoScaling::ScalableTarget", template)
    policies = resources_of_type("AWS::ApplicationAutoScaling::ScalingPolicy", template)
    scaled = {
        (spec["Properties"]["ResourceId"]["Fn::Sub"], spec["Properties"]["ScalableDimension"])
        for spec in targets.values()
    }
    assert scaled == {
        (f"table/${{{table}}}", f"dynamodb:table:{unit}CapacityUnits") for table in tables for unit in ("Read", "Write")
    }
    assert all(spec["Condition"] == "IsProvisioned" for spec in [*targets.values(), *policies.values()])
    assert {
        resolver.resolve(spec["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"])
        for spec in policies.values()
    } == {"70"}
    assert resolver.condition("IsProvisioned")
    assert not Resolver(refs=parameter_defaults(template)).condition("IsProvisioned")
    # AND a DynamoDB throttle alarm watches both tables
    alarm = load_template()["Resources"]["TableThrottlesAlarm"]["Properties"]
    watched = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in alarm["Metrics"] if "MetricStat" in m
    }
    assert watched == set(tables)


def test_the_run_webhook_and_its_route_exist_only_on_the_routine_path() -> None:
    template = load_template()
    assert functions()["RunWebhookFunction"].condition == "UseRoutines"
    assert template["Resources"]["RunWebhookLogGroup"]["Condition"] == "UseRoutines"
    assert template["Outputs"]["RoutineWebhookUrl"]["Condition"] == "UseRoutines"
    defaults = parameter_defaults(template)
    assert not Resolver(refs=defaults).condition("UseRoutines")  # the table path, the default
    assert Resolver(refs={**defaults, "ClayEnrichmentPath": "routine"}).condition("UseRoutines")


def test_the_lead_backlog_alarm_fires_well_before_lead_queue_drops_leads() -> None:
    # GIVEN LeadQueue's retention and the backlog alarm's threshold, at their bounds and default
    resources = load_template()["Resources"]
    retention = int(resources["LeadQueue"]["Properties"]["MessageRetentionPeriod"])
    alarm = resources["LeadBacklogAgeAlarm"]["Properties"]
    parameter = load_template()["Parameters"]["LeadQueueAgeAlarmSeconds"]
    # THEN it watches LeadQueue's oldest lead, and even at its highest setting leaves two days to act
    assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["LeadQueue", "QueueName"]}}]
    assert alarm["Threshold"] == {"Ref": "LeadQueueAgeAlarmSeconds"}
    assert parameter["MaxValue"] <= retention - 2 * 86400
    assert int(parameter["Default"]) <= retention / 4
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
