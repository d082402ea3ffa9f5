"""`sam local start-api --env-vars <scripts/sam-local-env.sh>` reaches local/'s peers.

SAM CLI gives a function's container only the variables template.yaml
declares for it; an --env-vars file overrides their values but never adds
one, silently. These tests compute each function's container environment
with SAM CLI's own code, as `sam local start-api` does: the file is read by
`InvokeContext._get_env_vars_value`, the template by `SamLocalStackProvider`
and `SamFunctionProvider` (Globals merged, intrinsics resolved as SAM
resolves them locally), and the two are combined by
`LocalLambdaRunner._make_env_vars` (template values < shell < the file's
"Parameters" < the file's per-function keys). No Docker is needed for that
part, so what is checked here is exactly what the containers would get.
"""

import json
import os
import pathlib
import subprocess

import pytest
from samcli.commands.local.cli_common.invoke_context import InvokeContext
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parents[2]

# SAM CLI's template validation warns about its own deprecated calls.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html,
# "Defined runtime environment variables": "The keys for these environment
# variables are reserved and cannot be set in your function configuration."
LAMBDA_RESERVED = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "TZ",
}

# What a function's role may call, and the variable that points its client
# at local/'s peer for that service.
ENDPOINTS = {"dynamodb:": "AWS_ENDPOINT_URL_DYNAMODB", "sns:": "AWS_ENDPOINT_URL_SNS"}


def template():
    return yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def env_file(tmp_path_factory):
    """What `scripts/sam-local-env.sh > .local/sam-env.json` writes (local secrets included)."""
    printed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "sam-local-env.sh")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp_path_factory.mktemp("sam") / "sam-env.json"
    path.write_text(printed)
    return path


@pytest.fixture
def clean_shell(monkeypatch, tmp_path):
    """A shell without AWS settings or any variable the template declares:
    SAM lets shell variables override template values, and would look for
    credentials (IMDS included) if none were set."""
    declared = {
        name
        for resource in template()["Resources"].values()
        for name in resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
    }
    for name in list(os.environ):
        if name.startswith("AWS_") or name in declared:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def container_environments(env_file, template_path=ROOT / "template.yaml"):
    """{logical id: the environment `sam local start-api --env-vars env_file` gives its container}."""
    overrides = InvokeContext._get_env_vars_value(str(env_file))
    stacks, _ = SamLocalStackProvider.get_stacks(
        str(template_path), parameter_overrides=None, global_parameter_overrides=None
    )
    provider = SamFunctionProvider(stacks)
    runner = LocalLambdaRunner(
        local_runtime=None,
        function_provider=provider,
        cwd=str(ROOT),
        real_path=str(ROOT),
        env_vars_values=overrides,
    )
    return {function.name: runner._make_env_vars(function).resolve() for function in provider.get_all()}


def declared_variables(logical_id):
    """Names template.yaml declares for a function (Globals included), whatever their value."""
    sam = template()
    names = set(sam["Globals"]["Function"].get("Environment", {}).get("Variables", {}))
    names |= set(sam["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}))
    return names


def services_called(logical_id):
    """Prefixes ("dynamodb:", "sns:") of the actions a function's inline policies allow."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            action = value.get("Action")
            for a in [action] if isinstance(action, str) else action or []:
                found.update(prefix for prefix in ENDPOINTS if a.startswith(prefix))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(template()["Resources"][logical_id]["Properties"].get("Policies", []))
    return found


def check(environments, intended):
    """Problems with the computed environments, against the file's intent."""
    sam = template()
    functions = [i for i, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    resources = set(sam["Resources"])
    problems = []
    assert sorted(environments) == sorted(functions)

    for name in intended:
        if not any(name in declared_variables(f) for f in functions):
            problems.append(f"{name}: set by sam-local-env.sh, declared by no function, so SAM drops it")

    for function in functions:
        env = environments[function]
        for name in declared_variables(function) & set(intended):
            if env.get(name) != intended[name]:
                problems.append(f"{function}: {name}={env.get(name)!r}, sam-local-env.sh sets {intended[name]!r}")
        for prefix in services_called(function):
            variable = ENDPOINTS[prefix]
            if variable not in intended:
                problems.append(f"{function} calls {prefix[:-1]}, but sam-local-env.sh sets no {variable}")
            elif env.get(variable) != intended[variable]:
                problems.append(
                    f"{function} calls {prefix[:-1]} at {env.get(variable)!r}, not local/'s {intended[variable]!r}"
                )
        # "Parameters" goes to every function, but SAM passes each only what
        # it declares (a secret reaches only the functions that read it).
        extra = set(env) - declared_variables(function) - {n for n in env if n.startswith("AWS_")}
        if extra:
            problems.append(f"{function}: gets undeclared {sorted(extra)}")
        # Nothing only CloudFormation could fill in reaches a local container.
        for name in declared_variables(function):
            value = env.get(name, "")
            if "{{resolve:" in value or value in resources:
                problems.append(f"{function}: {name}={value!r} is for CloudFormation; sam-local-env.sh must set it")
    return problems


def test_the_env_vars_file_has_the_shape_sam_reads(env_file):
    """{"Parameters": {...}} applies to every function (each still gets only
    what it declares); any other top-level key must name a function."""
    data = json.loads(env_file.read_text())
    functions = {i for i, r in template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(data) <= {"Parameters"} | functions, set(data) - functions
    assert data["Parameters"], "sam-local-env.sh sets nothing"
    for values in data.values():
        assert all(isinstance(v, str) for v in values.values()), "env-vars values are strings"


def test_sam_local_gives_every_function_what_local_intends(env_file, clean_shell):
    intended = json.loads(env_file.read_text())["Parameters"]
    problems = check(container_environments(env_file), intended)
    assert not problems, "\n  " + "\n  ".join(problems)


def test_the_check_sees_a_dropped_endpoint(env_file, clean_shell, tmp_path):
    """Without the declaration, SAM drops the file's endpoint and the check says so."""
    sam = (ROOT / "template.yaml").read_text()
    broken = tmp_path / "template.yaml"
    broken.write_text(sam.replace('AWS_ENDPOINT_URL_DYNAMODB: ""', "OTHER_VARIABLE: x", 1))
    assert broken.read_text() != sam, "the template declares AWS_ENDPOINT_URL_DYNAMODB"
    intended = json.loads(env_file.read_text())["Parameters"]
    problems = check(container_environments(env_file, broken), intended)
    assert any("calls dynamodb at ''" in p or "calls dynamodb at None" in p for p in problems), problems


def test_no_function_sets_a_variable_lambda_reserves():
    sam = template()
    for function in [i for i, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]:
        reserved = declared_variables(function) & LAMBDA_RESERVED
        assert not reserved, f"{function}: Lambda refuses {sorted(reserved)}"
