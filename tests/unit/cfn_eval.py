"""A small evaluator of CloudFormation templates, for the tests of deploy/*.yaml.

What it does, and no more:

- ``load``: YAML with the short-form tags (``!Ref``, ``!Sub``, ``!GetAtt a.b``, ``!If`` ...) turned into
  their long forms (``{"Ref": ...}``, ``{"Fn::Sub": ...}``);
- ``Stack(template, parameters)``: the parameter values (given, else the default) checked the way
  CloudFormation checks them (AllowedPattern as a full match, AllowedValues, Min/MaxLength,
  Min/MaxValue, Number), the Conditions, and ``resolve``, which evaluates Ref, Fn::Sub (both forms,
  ``${!Literal}`` included), Fn::If (with AWS::NoValue), Fn::Join, Fn::Split, Fn::Select, Fn::Equals,
  Fn::Not, Fn::And, Fn::Or, Condition, the pseudo parameters AWS::AccountId, AWS::Region,
  AWS::Partition, AWS::StackName, AWS::URLSuffix, and Fn::GetAtt for the attributes of ``ATTRIBUTES``;
- ``resources()``: every resource whose Condition holds, its properties resolved.

A Ref or GetAtt it cannot derive raises ``Unsupported`` instead of guessing. Secrets Manager ARNs end in
a fixed suffix (``-AbCdEf``) where AWS draws a random one; dynamic references (``{{resolve:...}}``)
stay as text, as CloudFormation resolves them only when it deploys. Rules are not evaluated: they
look at the account (``Fn::ValueOf``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

SECRET_SUFFIX = "AbCdEf"  # AWS appends six random characters to a secret's name in its ARN
NO_VALUE = object()  # AWS::NoValue: the property is dropped


class Unsupported(NotImplementedError):
    """The template uses something this evaluator does not derive."""


class ParameterError(ValueError):
    """CloudFormation would refuse this parameter value."""


# -- loading -------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)


def load(path: str | Path) -> dict:
    return yaml.load(Path(path).read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


# -- physical names and attributes -----------------------------------------------------------------------


def _bucket(stack: Stack, props: dict, attribute: str | None) -> str:
    name = props["BucketName"]
    return {None: name, "Arn": f"arn:{stack.partition}:s3:::{name}"}[attribute]


def _topic(stack: Stack, props: dict, attribute: str | None) -> str:
    arn = f"arn:{stack.partition}:sns:{stack.region}:{stack.account}:{props['TopicName']}"
    return {None: arn, "TopicArn": arn, "TopicName": props["TopicName"]}[attribute]


def _role(stack: Stack, props: dict, attribute: str | None) -> str:
    name = props["RoleName"]
    arn = f"arn:{stack.partition}:iam::{stack.account}:role{props.get('Path', '/')}{name}"
    return {None: name, "Arn": arn}[attribute]


def _secret(stack: Stack, props: dict, attribute: str | None) -> str:
    arn = f"arn:{stack.partition}:secretsmanager:{stack.region}:{stack.account}:secret:{props['Name']}-{SECRET_SUFFIX}"
    return {None: arn, "Id": arn}[attribute]


def _glue_database(stack: Stack, props: dict, attribute: str | None) -> str:
    return {None: props["DatabaseInput"]["Name"]}[attribute]


def _glue_connection(stack: Stack, props: dict, attribute: str | None) -> str:
    return {None: props["ConnectionInput"]["Name"]}[attribute]


def _security_group(stack: Stack, props: dict, attribute: str | None) -> str:
    group_id = f"sg-{props['GroupName']}"  # AWS draws an id; the group's name keeps it distinct here
    return {None: group_id, "GroupId": group_id}[attribute]


def _queue(stack: Stack, props: dict, attribute: str | None) -> str:
    name = props["QueueName"]
    arn = f"arn:{stack.partition}:sqs:{stack.region}:{stack.account}:{name}"
    url = f"https://sqs.{stack.region}.amazonaws.com/{stack.account}/{name}"
    return {None: url, "QueueUrl": url, "Arn": arn, "QueueName": name}[attribute]


def _events_rule(stack: Stack, props: dict, attribute: str | None) -> str:
    name, bus = props["Name"], props.get("EventBusName", "default")
    path = name if bus == "default" else f"{bus}/{name}"
    # Ref: the name on the default bus, "<bus>|<name>" on another
    ref = name if bus == "default" else f"{bus}|{name}"
    return {None: ref, "Arn": f"arn:{stack.partition}:events:{stack.region}:{stack.account}:rule/{path}"}[attribute]


def _mwaa(stack: Stack, props: dict, attribute: str | None) -> str:
    name = props["Name"]
    return {
        None: name,
        "Arn": f"arn:{stack.partition}:airflow:{stack.region}:{stack.account}:environment/{name}",
        "WebserverUrl": f"{name}.{stack.region}.airflow.amazonaws.com",
    }[attribute]


ATTRIBUTES = {
    "AWS::S3::Bucket": _bucket,
    "AWS::SNS::Topic": _topic,
    "AWS::IAM::Role": _role,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::Glue::Database": _glue_database,
    "AWS::Glue::Connection": _glue_connection,
    "AWS::EC2::SecurityGroup": _security_group,
    "AWS::SQS::Queue": _queue,
    "AWS::Events::Rule": _events_rule,
    "AWS::MWAA::Environment": _mwaa,
}


# -- the stack ----------------------------------------------------------------------------------------------


class Stack:
    def __init__(
        self,
        template: dict,
        parameters: dict[str, Any],
        *,
        account: str = "123456789012",
        region: str = "eu-west-1",
        partition: str = "aws",
        stack_name: str = "etl",
    ):
        self.template = template
        self.account, self.region, self.partition, self.stack_name = account, region, partition, stack_name
        declared = template.get("Parameters", {})
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ParameterError(f"parameters not in the template: {sorted(unknown)}")
        self.parameters = {name: _check_parameter(name, spec, parameters.get(name)) for name, spec in declared.items()}
        self._conditions: dict[str, bool] = {}

    # conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    # references
    def pseudo(self, name: str) -> str:
        values = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name not in values:
            raise Unsupported(f"pseudo parameter {name}")
        return values[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        return self._physical(name, None)

    def get_att(self, logical_id: str, attribute: str) -> str:
        return self._physical(logical_id, attribute)

    def _physical(self, logical_id: str, attribute: str | None) -> str:
        resource = self.template["Resources"].get(logical_id)
        if resource is None:
            raise Unsupported(f"no resource or parameter {logical_id}")
        if "Condition" in resource and not self.condition(resource["Condition"]):
            raise Unsupported(f"{logical_id} is not created (condition {resource['Condition']} is false)")
        derive = ATTRIBUTES.get(resource["Type"])
        if derive is None:
            raise Unsupported(f"Ref/GetAtt of a {resource['Type']} ({logical_id})")
        try:
            return derive(self, self.resolve(resource.get("Properties", {})), attribute)
        except KeyError as error:
            raise Unsupported(f"{logical_id}: cannot derive {attribute or 'Ref'} ({error})") from None

    # evaluation
    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [value for value in (self.resolve(item) for item in node) if value is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            function = _FUNCTIONS.get(key)
            if function is not None:
                return function(self, arg)
            if key.startswith("Fn::"):
                raise Unsupported(key)
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return _text(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resources(self) -> dict[str, dict]:
        """Logical id -> {"Type", "Properties" (resolved), and the other keys as written}, for every
        resource whose Condition holds."""
        out = {}
        for logical_id, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            out[logical_id] = {**resource, "Properties": self.resolve(resource.get("Properties", {}))}
        return out

    def outputs(self) -> dict[str, Any]:
        out = {}
        for name, output in self.template.get("Outputs", {}).items():
            if "Condition" in output and not self.condition(output["Condition"]):
                continue
            out[name] = self.resolve(output["Value"])
        return out


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _if(stack: Stack, arg: list) -> Any:
    name, then, otherwise = arg
    return stack.resolve(then if stack.condition(name) else otherwise)


def _join(stack: Stack, arg: list) -> str:
    separator, values = arg
    return separator.join(str(value) for value in stack.resolve(values))


def _split(stack: Stack, arg: list) -> list[str]:
    separator, value = arg
    return str(stack.resolve(value)).split(separator)


def _select(stack: Stack, arg: list) -> Any:
    index, values = arg
    return stack.resolve(values)[int(stack.resolve(index))]


def _get_att(stack: Stack, arg: list) -> str:
    logical_id, attribute = arg
    return stack.get_att(logical_id, attribute)


_FUNCTIONS = {
    "Ref": lambda stack, arg: stack.ref(arg),
    "Condition": lambda stack, arg: stack.condition(arg),
    "Fn::Sub": lambda stack, arg: stack._sub(arg),
    "Fn::If": _if,
    "Fn::Join": _join,
    "Fn::Split": _split,
    "Fn::Select": _select,
    "Fn::GetAtt": _get_att,
    "Fn::Equals": lambda stack, arg: str(stack.resolve(arg[0])) == str(stack.resolve(arg[1])),
    "Fn::Not": lambda stack, arg: not stack.resolve(arg[0]),
    "Fn::And": lambda stack, arg: all(stack.resolve(item) for item in arg),
    "Fn::Or": lambda stack, arg: any(stack.resolve(item) for item in arg),
}


# -- parameters -------------------------------------------------------------------------------------------


def _check_parameter(name: str, spec: dict, value: Any) -> Any:
    """The value CloudFormation would use for parameter ``name``, or ParameterError as it would refuse it."""
    if value is None:
        if "Default" not in spec:
            raise ParameterError(f"{name}: no value and no default")
        value = spec["Default"]
    kind = spec["Type"]
    if kind == "Number":
        text = str(value)
        try:
            number = float(text)
        except ValueError:
            raise ParameterError(f"{name}: {text!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise ParameterError(f"{name}: {text} < MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise ParameterError(f"{name}: {text} > MaxValue {spec['MaxValue']}")
        return text
    if kind.startswith("List<") or kind.startswith("CommaDelimitedList"):
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item) for item in items]
    text = str(value)
    if kind == "String":
        if "MinLength" in spec and len(text) < int(spec["MinLength"]):
            raise ParameterError(f"{name}: {text!r} is shorter than MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
            raise ParameterError(f"{name}: {text!r} is longer than MaxLength {spec['MaxLength']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], text):
            raise ParameterError(f"{name}: {text!r} does not match {spec['AllowedPattern']}")
    if "AllowedValues" in spec and text not in [str(allowed) for allowed in spec["AllowedValues"]]:
        raise ParameterError(f"{name}: {text!r} is not one of {spec['AllowedValues']}")
    return text
