"""Reads template.yaml so local runs and tests use exactly what is deployed.

Handlers, environments, queues, tables, event sources and routes all come from the
template; only resource references are resolved to local values (queue URLs, table names).
"""

from __future__ import annotations

import contextvars
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
SERVE_ENV = ROOT / ".local-stack" / "serve.env"  # `clay-pipeline run --serve` writes its URLs here while it is up


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation's short-form tags."""


def _tag(name: str) -> Callable[[yaml.Loader, yaml.Node], Any]:
    def construct(loader: yaml.Loader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _short in (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Not",
    "Equals",
    "Select",
    "Split",
    "FindInMap",
    "Condition",
    "ImportValue",
    "GetAZs",
    "Base64",
    "And",
    "Or",
):
    _CfnLoader.add_constructor(f"!{_short}", _tag("Ref" if _short == "Ref" else f"Fn::{_short}"))


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        # _CfnLoader is a SafeLoader subclass: no arbitrary objects.
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506  # nosec B506
    return document


NO_VALUE = object()  # AWS::NoValue: the property or list item is left out


@dataclass
class Resolver:
    """Turns Ref / GetAtt / Sub, and If with the template's Conditions, into local values."""

    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=lambda: load_template().get("Conditions", {}))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                if argument == "AWS::NoValue":
                    return NO_VALUE
                return self.refs.get(argument, f"local-{argument}")
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::GetAtt":
                resource, attribute = argument
                return self.attributes.get((resource, attribute), f"arn:aws:local:::{resource}")
            if key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub(m.group(1))), text)
        if isinstance(value, dict):
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        """A named condition of the template, evaluated with the current parameter values."""
        return bool(self._evaluate(self.conditions[name]))

    def _evaluate(self, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, argument),) = expression.items()
            if key == "Fn::Equals":
                left, right = (str(self._evaluate(side)) for side in argument)
                return left == right
            if key == "Fn::Not":
                return not self._evaluate(argument[0])
            if key == "Fn::And":
                return all(self._evaluate(part) for part in argument)
            if key == "Fn::Or":
                return any(self._evaluate(part) for part in argument)
            if key in ("Condition", "Fn::Condition"):
                return self.condition(argument)
        return self.resolve(expression)

    def _sub(self, name: str) -> Any:
        if "." in name:
            resource, attribute = name.split(".", 1)
            return self.resolve({"Fn::GetAtt": [resource, attribute]})
        return self.resolve({"Ref": name})


def parameter_defaults(template: dict[str, Any] | None = None) -> dict[str, str]:
    template = template or load_template()
    return {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}


def resources_of_type(resource_type: str, template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template or load_template()
    return {name: spec for name, spec in template["Resources"].items() if spec["Type"] == resource_type}


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, Any]
    events: dict[str, Any]
    policies: list[Any]
    condition: str = ""  # the template Condition the function is deployed under ('' : always)

    @property
    def module_path(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")


def functions(template: dict[str, Any] | None = None) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function with Globals applied."""
    template = template or load_template()
    defaults = template.get("Globals", {}).get("Function", {})
    resolver = Resolver(refs=parameter_defaults(template))
    specs = {}
    for logical_id, resource in resources_of_type("AWS::Serverless::Function", template).items():
        props = {**defaults, **resource["Properties"]}
        environment = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=ROOT / props["CodeUri"],
            handler=props["Handler"],
            timeout=int(resolver.resolve(props.get("Timeout", 3))),
            memory=int(resolver.resolve(props.get("MemorySize", 128))),
            environment=environment,
            events=props.get("Events", {}),
            policies=props.get("Policies", []),
            condition=str(resource.get("Condition", "")),
        )
    return specs


def sqs_batch_size(logical_id: str, parameters: dict[str, str] | None = None) -> int:
    """The BatchSize of a function's SQS event source, with the template's defaults overridden by `parameters`."""
    resolver = Resolver(refs={**parameter_defaults(), **(parameters or {})})
    return next(
        int(resolver.resolve(event["Properties"]).get("BatchSize", 10))
        for event in functions()[logical_id].events.values()
        if event["Type"] == "SQS"
    )


def placeholder_environment(logical_id: str) -> dict[str, str]:
    """A function's template environment without any AWS: parameter defaults, placeholder resource names."""
    resolver = Resolver(refs=parameter_defaults())
    return {name: str(resolver.resolve(value)) for name, value in functions()[logical_id].environment.items()}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (restored afterwards)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


_COLD_START_ENV: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("cold_start_env", default=None)


class _ColdStartEnviron(MutableMapping[str, str]):
    """os.environ as each thread sees it: the process's, with the environment of a function this thread is
    cold-starting over it. Writes go to the process's (os.putenv included)."""

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process

    def _over(self) -> dict[str, str]:
        return _COLD_START_ENV.get() or {}

    def __getitem__(self, name: str) -> str:
        over = self._over()
        return over[name] if name in over else self.process[name]

    def __setitem__(self, name: str, value: str) -> None:
        self.process[name] = value

    def __delitem__(self, name: str) -> None:
        del self.process[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.process, **self._over()})

    def __len__(self) -> int:
        return len({**self.process, **self._over()})

    def copy(self) -> dict[str, str]:
        return dict(self)


@contextmanager
def cold_start_environment(values: dict[str, str]) -> Iterator[None]:
    """`values` over os.environ for this thread only, while a function's module loads.

    Every function of a local stack runs in one process, but each Lambda function has its own environment: a
    cold start that set its variables process-wide (os.environ) changed them under the other functions'
    invocations running meanwhile. The callback, reading CONFIG_SECRET_ID at request time, then read the
    router's secret while a router instance started, found no CALLBACK_SECRETS and answered 401, which Clay
    does not retry (a row lost in the local run, never in AWS)."""
    if not isinstance(os.environ, _ColdStartEnviron):
        os.environ = _ColdStartEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003 - wrapped, not cleared
    token = _COLD_START_ENV.set({**(_COLD_START_ENV.get() or {}), **values})
    try:
        yield
    finally:
        _COLD_START_ENV.reset(token)


def load_handler_module(logical_id: str, env: dict[str, str] | None = None) -> ModuleType:
    """Import a function's handler module afresh (a cold start) with `env` over the environment while it loads
    (on the loading thread only: cold_start_environment)."""
    spec = functions()[logical_id]
    module_name = f"lambda_{logical_id.lower()}"
    import_spec = importlib.util.spec_from_file_location(module_name, spec.module_path)
    if import_spec is None or import_spec.loader is None:
        raise ImportError(f"cannot load {spec.module_path}")
    module = importlib.util.module_from_spec(import_spec)
    with cold_start_environment({"AWS_LAMBDA_FUNCTION_NAME": logical_id, **(env or {})}):
        sys.modules[module_name] = module
        import_spec.loader.exec_module(module)
    return module
