"""Deploy-readiness checks of template.yaml that lint cannot make.

Run by scripts/check_deploy.sh (part of `make test`) with pytest. They read the
template as the SAM translator turns it into CloudFormation (the same
`samtranslator` package `sam deploy` uses), the deploy role in
docs/deploy-role.yaml, and CloudFormation's own resource schemas (shipped
with cfn-lint), whose `handlers` list the API actions CloudFormation calls to
create, update and delete each resource type.
"""

import fnmatch
import json
import os
import pathlib
import re
import tomllib

import pytest
from cfnlint.data import schemas as cfn_schemas
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load(path):
    return yaml_parse((ROOT / path).read_text())


def translated(parameters=None):
    """template.yaml after the SAM transform, as CloudFormation receives it."""
    template = load("template.yaml")
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # sam build/package put an S3 URI here; the translator insists on one.
            resource["Properties"]["CodeUri"] = "s3://artifacts/function.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, parameters or {}, NoManagedPolicies())


@pytest.fixture(scope="module")
def cfn():
    return translated({"Stage": "prod", "AlarmEmail": "ops@example.com"})


# ------------------------------------------------------------------ routes


def http_api(cfn):
    (api,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    return when_optional_resources_exist(api["Properties"]["Body"])


def when_optional_resources_exist(value):
    """`value` as deployed with every resource that has a Condition of its
    own (DocsEnabled) there: `Fn::If [C, x, AWS::NoValue]`, how SAM writes
    such a function's routes and how the key policy names its role, is x."""
    if isinstance(value, dict):
        branches = value.get("Fn::If")
        if len(value) == 1 and isinstance(branches, list) and branches[2] == {"Ref": "AWS::NoValue"}:
            return when_optional_resources_exist(branches[1])
        return {k: when_optional_resources_exist(v) for k, v in value.items()}
    if isinstance(value, list):
        return [when_optional_resources_exist(v) for v in value]
    return value


def test_docs_enabled_false_leaves_out_the_docs_function_and_its_routes(cfn):
    """DocsEnabled: every resource of the docs function (SAM's role,
    permissions, its log group and alarms) carries the condition, and so do
    its routes in the API and its role in the key policy."""
    docs = {i for i, r in cfn["Resources"].items() if i.startswith("Docs")}
    assert {"DocsFunction", "DocsFunctionRole", "DocsLogGroup"} <= docs
    for logical_id in docs:
        assert cfn["Resources"][logical_id].get("Condition") == "DocsEnabled", logical_id
    assert cfn["Conditions"]["DocsEnabled"] == {"Fn::Equals": [{"Ref": "DocsEnabled"}, "true"]}
    (api,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    for path in ["/openapi.json", "/docs", "/docs/{asset}", "/redoc", "/swagger"]:
        assert api["Properties"]["Body"]["paths"][path]["Fn::If"][0] == "DocsEnabled", path
    # Every other route and resource is unconditional.
    conditional = {i for i, r in cfn["Resources"].items() if r.get("Condition") and i.endswith("Function")}
    assert conditional == {"DocsFunction"}


def test_no_route_ends_in_a_slash(cfn):
    """HTTP APIs refuse route keys ending in '/' ("invalid route name"),
    but the root's, `/` (the web page's)."""
    paths = list(http_api(cfn)["paths"])
    assert len(paths) >= 5, paths
    for path in paths:
        assert path.startswith("/") and (path == "/" or not path.endswith("/")), path
    sam = load("template.yaml")
    for name, resource in sam["Resources"].items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                path = event["Properties"]["Path"]
                assert path == "/" or not path.endswith("/"), name


def test_route_settings_name_declared_routes(cfn):
    methods = {"x-amazon-apigateway-any-method": "ANY"}
    routes = {
        f"{methods.get(m, m.upper())} {path}"
        for path, operations in http_api(cfn)["paths"].items()
        for m in operations
    }
    (stage,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    settings = stage["Properties"].get("RouteSettings", {})
    assert "ANY /users/auth/get_code" in settings, "the SMS route has its own throttle"
    for key in settings:
        assert key in routes, f"RouteSettings {key!r} names no route of {sorted(routes)}"


def test_every_function_may_be_invoked_by_its_route(cfn):
    """SAM writes the invoke permission's source ARN from the route: its
    method (`*` for ANY) and path (a path parameter as `*`)."""
    methods = {"x-amazon-apigateway-any-method": "*"}
    routes = {
        methods.get(method, method.upper()) + re.sub(r"\{[^}/]+\}", "*", path)
        for path, operations in http_api(cfn)["paths"].items()
        for method in operations
    }
    permissions = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"]
    by_api = [p for p in permissions if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    arns = {p["Properties"]["SourceArn"]["Fn::Sub"][0].split("${__Stage__}/", 1)[1] for p in by_api}
    assert arns == routes
    # The others are the public function URL's (test_the_jwks_function_has_a_public_url).
    for permission in permissions:
        if permission not in by_api:
            assert permission["Properties"]["FunctionName"] == {"Ref": "JwksFunction"}, permission


# ------------------------------------------------------------------ the JWT authorizer

# The tokens' issuer: https:// and the host of the jwks function's own URL
# (its FunctionUrl attribute is https://<id>.lambda-url.<region>.on.aws/), no
# final slash. The functions cannot refer to the API (its body refers to
# them), nor can the authorizer (inside the API), so the issuer is that URL.
JWKS_URL_HOST = {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": ["JwksFunctionUrl", "FunctionUrl"]}]}]}
ISSUER = {"Fn::Sub": ["https://${JwksUrlHost}", {"JwksUrlHost": JWKS_URL_HOST}]}
AUDIENCE = {"Fn::Sub": "phone-auth-${Stage}"}
AUTHORIZER = "AccessToken"
# The functions a bearer (an access token) calls: derived below from the
# template and the sample events, and named here so the derivation cannot
# quietly find none.
# Invoked by the users table's stream, behind no route.
STREAM_FUNCTIONS = {"PublishEventsFunction"}


def test_the_stream_functions_are_those_with_a_stream_event():
    assert STREAM_FUNCTIONS == {
        i
        for i, r in sam_functions().items()
        if any(e["Type"] == "DynamoDB" for e in r["Properties"]["Events"].values())
    }


BEARER_FUNCTIONS = {
    "RetrieveFunction",
    "SetReferrerFunction",
    "LogoutAllFunction",
    "ListSessionsFunction",
    "RevokeSessionFunction",
    "DeleteAccountFunction",
    "ClientProfileFunction",
    "UpdateClientProfileFunction",
    "ListReferralsFunction",
}


def evaluate(value, function_url):
    """The few intrinsics of the issuer expression, as CloudFormation computes them."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, args),) = value.items()
        if name == "Fn::GetAtt":
            assert args == ["JwksFunctionUrl", "FunctionUrl"], args
            return function_url
        if name == "Fn::Split":
            return evaluate(args[1], function_url).split(args[0])
        if name == "Fn::Select":
            return evaluate(args[1], function_url)[args[0]]
        if name == "Fn::Sub":
            text, variables = args
            for variable, expression in variables.items():
                text = text.replace("${" + variable + "}", evaluate(expression, function_url))
            assert "${" not in text, text
            return text
    raise AssertionError(f"not part of the issuer expression: {value}")


def sam_functions():
    return {i: r for i, r in load("template.yaml")["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def variables(resource):
    return resource["Properties"].get("Environment", {}).get("Variables", {})


def test_the_issuer_is_the_jwks_function_url_without_a_final_slash():
    url = "https://abcdefghij0123456789klmnop.lambda-url.eu-central-1.on.aws/"
    assert evaluate(ISSUER, url) == "https://abcdefghij0123456789klmnop.lambda-url.eu-central-1.on.aws"


def test_the_api_has_one_jwt_authorizer_for_our_issuer_and_audience(cfn):
    auth = load("template.yaml")["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth == {
        "Authorizers": {
            AUTHORIZER: {
                "IdentitySource": "$request.header.Authorization",
                "JwtConfiguration": {"issuer": ISSUER, "audience": [AUDIENCE]},
            }
        }
    }, "one JWT authorizer, attached route by route (no DefaultAuthorizer)"
    scheme = http_api(cfn)["components"]["securitySchemes"][AUTHORIZER]
    assert scheme["x-amazon-apigateway-authorizer"] == {
        "type": "jwt",
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {"issuer": ISSUER, "audience": [AUDIENCE]},
    }


def test_every_token_function_gets_the_authorizers_issuer_and_audience():
    """What the functions sign and check is what the authorizer checks; the
    jwks function has no issuer (it would refer to its own URL: a cycle) and
    takes it from the requests to that URL."""
    functions = sam_functions()
    for logical_id, resource in functions.items():
        env = variables(resource)
        handles_tokens = "TOKEN_PRIVATE_KEY" in env or "TOKEN_AUDIENCE" in env
        if logical_id == "JwksFunction":
            assert "TOKEN_PUBLIC_KEY" in env and "TOKEN_AUDIENCE" not in env, logical_id
            # Declared empty (unset) only for sam local's --env-vars.
            assert env.get("TOKEN_ISSUER", "") == "", "the jwks function takes its issuer from its requests"
            continue
        if handles_tokens:
            assert env.get("TOKEN_ISSUER") == ISSUER, logical_id
            assert env.get("TOKEN_AUDIENCE") == AUDIENCE, logical_id
        else:
            assert "TOKEN_ISSUER" not in env and "TOKEN_PUBLIC_KEY" not in env, logical_id
    signers = {i for i, r in functions.items() if "TOKEN_PRIVATE_KEY" in variables(r)}
    assert signers == {"SendCodeFunction", "RefreshFunction", "RegisterFunction", "LoginFunction"}


def test_the_jwks_function_has_a_public_url(cfn):
    functions = sam_functions()
    with_url = {i for i, r in functions.items() if "FunctionUrlConfig" in r["Properties"]}
    assert with_url == {"JwksFunction"}
    assert functions["JwksFunction"]["Properties"]["FunctionUrlConfig"] == {"AuthType": "NONE"}
    resources = cfn["Resources"]
    url = resources["JwksFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"] == {"TargetFunctionArn": {"Ref": "JwksFunction"}, "AuthType": "NONE"}
    # Since October 2025 a public function URL needs both permissions.
    public = sorted(
        (p["Properties"]["Action"], json.dumps(p["Properties"], sort_keys=True))
        for p in resources.values()
        if p["Type"] == "AWS::Lambda::Permission" and p["Properties"]["Principal"] == "*"
    )
    assert [json.loads(p) for _, p in public] == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "JwksFunction"},
            "Principal": "*",
            "InvokedViaFunctionUrl": True,
        },
        {
            "Action": "lambda:InvokeFunctionUrl",
            "FunctionName": {"Ref": "JwksFunction"},
            "Principal": "*",
            "FunctionUrlAuthType": "NONE",
        },
    ]
    # The issuer answers before the API's authorizer is created.
    (api,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    public_ids = {
        i for i, r in resources.items() if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["Principal"] == "*"
    }
    assert set(api.get("DependsOn", [])) == public_ids


def bearer_functions():
    """Functions that verify access tokens (public key and audience; jwks has
    the key only), which must be exactly those with a sample event answered
    401 missing_token without one (shared/tests/events.rs runs them)."""
    functions = sam_functions()
    verifiers = {
        i for i, r in functions.items() if {"TOKEN_PUBLIC_KEY", "TOKEN_AUDIENCE"} <= set(variables(r))
    }
    binaries = {r["Metadata"]["BuildProperties"]["Binary"]: i for i, r in functions.items()}
    refusing = {binaries[path.parent.name] for path in (ROOT / "events").glob("*/401-missing_token*.json")}
    assert verifiers == refusing, "access-token verifiers vs events/*/401-missing_token*.json"
    assert verifiers == BEARER_FUNCTIONS
    return verifiers


def routes_by_function(cfn):
    """{logical id of the function: [(path, method, security)]} from the API as API Gateway gets it."""
    routes = {}
    for path, operations in http_api(cfn)["paths"].items():
        for method, operation in operations.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            (function,) = re.findall(r"\$\{(\w+)\.Arn\}", uri)
            routes.setdefault(function, []).append((path, method, operation.get("security")))
    return routes


def test_every_bearer_route_and_no_public_route_is_behind_the_authorizer(cfn):
    bearer = bearer_functions()
    routes = routes_by_function(cfn)
    # Every function is behind a route but those a stream invokes.
    assert set(routes) == set(sam_functions()) - STREAM_FUNCTIONS
    behind = [{AUTHORIZER: []}]
    preflights = {(path, function) for function, rs in routes.items() for path, m, _ in rs if m == "options"}
    for function, function_routes in routes.items():
        for path, method, security in function_routes:
            if function in bearer and method != "options":
                assert security == behind, f"{function}: {method} {path} must be behind {AUTHORIZER}"
            else:
                assert security is None, f"{function}: {method} {path} is public"
        if function in bearer:
            # A preflight carries no token: each bearer path has a public
            # OPTIONS route, to the function of the path's ANY route (its own
            # 204 and CORS). Besides ANY, a function may have the route of its
            # own method at a path another function's ANY route serves
            # (seed-004's PATCH profile).
            for path, method, _ in function_routes:
                if method == "x-amazon-apigateway-any-method":
                    assert (path, function) in preflights, f"{function}: no OPTIONS {path}"
                elif method != "options":
                    assert any(
                        m == "x-amazon-apigateway-any-method" and p == path
                        for other, rs in routes.items()
                        if other != function
                        for p, m, _ in rs
                    ), f"{function}: {method} {path} has no ANY route beside it"
        else:
            assert all(m == "x-amazon-apigateway-any-method" for _, m, _ in function_routes), function


def test_the_api_serves_the_keys_but_no_discovery_document(cfn):
    """On the API the document would name the API's host as issuer, which no
    token carries: it is served at the issuer's URL only (the jwks function's)."""
    paths = http_api(cfn)["paths"]
    assert "/.well-known/jwks.json" in paths
    assert "/.well-known/openid-configuration" not in paths


def test_the_outputs_name_the_issuer_audience_and_keys():
    outputs = load("template.yaml")["Outputs"]
    assert outputs["TokenIssuer"]["Value"] == ISSUER
    assert outputs["TokenAudience"]["Value"] == AUDIENCE
    assert outputs["JwksUrl"]["Value"] == {
        "Fn::Sub": ["https://${JwksUrlHost}/.well-known/jwks.json", {"JwksUrlHost": JWKS_URL_HOST}]
    }


# ------------------------------------------------------------------ the deploy role

# Actions CloudFormation's handlers list for features this template does not
# use, each with the reason it may be missing from the deploy role.
NOT_USED = {
    "ec2:*": "functions run outside a VPC",
    "elasticfilesystem:*": "no EFS mounts",
    "s3files:*": "no S3 file mounts",
    "kinesis:*": "no Kinesis streaming of tables",
    "firehose:*": "no log delivery to Firehose",
    "secretsmanager:ReplicateSecretToRegions": "the OTP key is not replicated to other regions",
    "secretsmanager:RemoveRegionsFromReplication": "the OTP key is not replicated to other regions",
    "kms:*@AWS::DynamoDB::Table": "tables use DynamoDB's AWS-owned key",
    "kms:*@AWS::Events::EventBus": "the event bus uses EventBridge's AWS-owned key",
    "dynamodb:ImportTable": "tables are not created from an S3 import",
    "dynamodb:DescribeImport": "tables are not created from an S3 import",
    "dynamodb:CreateTableReplica": "no global tables",
    "dynamodb:AssociateTableReplica": "no global tables",
    "dynamodb:EnableKinesisStreamingDestination": "no Kinesis streaming of tables",
    "dynamodb:DisableKinesisStreamingDestination": "no Kinesis streaming of tables",
    "dynamodb:UpdateKinesisStreamingDestination": "no Kinesis streaming of tables",
    "dynamodb:Scan": "only for S3 imports",
    "dynamodb:Query": "only for S3 imports",
    "dynamodb:GetItem": "only for S3 imports",
    "dynamodb:PutItem": "only for S3 imports",
    "dynamodb:UpdateItem": "only for S3 imports",
    "dynamodb:DeleteItem": "only for S3 imports",
    "dynamodb:BatchWriteItem": "only for S3 imports",
    "dynamodb:ListTables": "list handler only",
    "iam:CreateServiceLinkedRole@AWS::DynamoDB::Table": "only for global-table replicas",
    "logs:*@AWS::DynamoDB::Table": "only for S3 import error logs",
    "s3:*@AWS::DynamoDB::Table": "only for S3 imports",
    "s3:getObject@AWS::ApiGatewayV2::Api": "the API body is inline, not imported from S3",
    "s3:GetObject@AWS::Lambda::Function": "read by CloudFormation from the SAM artifact bucket (ArtifactBucket grants it)",
    "s3:GetObjectVersion@AWS::Lambda::Function": "the artifact keys are unversioned",
    "s3:REST.PUT.OBJECT": "not an IAM action (log delivery to S3 is not used)",
    "lambda:PassCapacityProvider": "no Lambda managed instances",
    "lambda:AssociateRuntimeAlias": "no runtime aliases",
    "iam:PassRole@AWS::SNS::Topic": "no SNS delivery-status logging roles",
    "iam:GetRole@AWS::SNS::Topic": "no SNS delivery-status logging roles",
    "iam:PassRole@AWS::SNS::Subscription": "no subscription roles (Firehose)",
    "iam:GetRole@AWS::SNS::Subscription": "no subscription roles (Firehose)",
    "apigateway:TagResource": "not an IAM action: tags are apigateway:PUT on /tags",
    "apigateway:UntagResource": "not an IAM action: tags are apigateway:DELETE on /tags",
}

# What the handlers do not list but a deploy of this template needs.
ALSO_NEEDED = {
    # SAM transform: CreateChangeSet on the transform itself.
    "cloudformation:CreateChangeSet": "arn:aws:cloudformation:us-east-1:aws:transform/Serverless-2016-10-31",
    # HTTP API access logs (API Gateway's documented logging permissions).
    "logs:CreateLogDelivery": "*",
    "logs:GetLogDelivery": "*",
    "logs:UpdateLogDelivery": "*",
    "logs:DeleteLogDelivery": "*",
    "logs:ListLogDeliveries": "*",
    "logs:PutResourcePolicy": "*",
    "logs:DescribeResourcePolicies": "*",
    "logs:DescribeLogGroups": "*",
    # Dynamic references to the secrets you create.
    "secretsmanager:GetSecretValue": "arn:aws:secretsmanager:us-east-1:123456789012:secret:phone-auth/prod/token-private-key-AbCdEf",
    # SAM uploads the function zips.
    "s3:PutObject": "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-abc123/phone-auth-prod/x.zip",
    "iam:CreateServiceLinkedRole": "*",
}


def handler_permissions(resource_type):
    root = pathlib.Path(cfn_schemas.__file__).parent
    index = json.loads((root / "providers" / "us-east-1.json").read_text())
    schema = json.loads((root / "resources" / f"{index[resource_type]}.json").read_text())
    handlers = schema.get("handlers", {})
    return {
        (action, handler)
        for handler in ("create", "update", "delete")
        for action in handlers.get(handler, {}).get("permissions", [])
    }


def excused(action, resource_type, handler):
    for key in NOT_USED:
        parts = key.split("@")
        if not fnmatch.fnmatchcase(action.lower(), parts[0].lower()):
            continue
        if len(parts) > 1 and parts[1] != resource_type:
            continue
        if len(parts) > 2 and parts[2] != handler:
            continue
        return True
    return False


class Role:
    """The deploy role's Allow statements, with the role stack's parameters filled in."""

    def __init__(self, values):
        role = load("docs/deploy-role.yaml")["Resources"]["DeployRole"]["Properties"]
        self.trust = role["AssumeRolePolicyDocument"]
        (policy,) = role["Policies"]
        self.statements = [self.evaluate(s, values) for s in policy["PolicyDocument"]["Statement"]]

    @staticmethod
    def evaluate(value, values):
        if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
            return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], value["Fn::Sub"])
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return values[value["Ref"]]
        if isinstance(value, dict):
            return {k: Role.evaluate(v, values) for k, v in value.items()}
        if isinstance(value, list):
            return [Role.evaluate(v, values) for v in value]
        return value

    def allows(self, action, resource="*"):
        for statement in self.statements:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
                resource == "*" or fnmatch.fnmatchcase(resource, r) for r in resources
            ):
                return True
        return False


ROLE_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AppStackName": "phone-auth-prod",
    "Stage": "prod",
    "SecretsPrefix": "phone-auth",
    "GitHubRepository": "owner/repo",
    "GitHubEnvironment": "prod",
}


def test_the_deploy_role_can_create_update_and_delete_everything_the_template_creates(cfn):
    role = Role(ROLE_PARAMETERS)
    types = sorted({r["Type"] for r in cfn["Resources"].values()})
    assert "AWS::Lambda::Function" in types and "AWS::ApiGatewayV2::Api" in types
    missing = []
    for resource_type in types:
        needs = handler_permissions(resource_type)
        assert needs, f"no handler permissions known for {resource_type}"
        for action, handler in sorted(needs):
            if not excused(action, resource_type, handler) and not role.allows(action):
                missing.append(f"{resource_type} {handler}: {action}")
    for action, resource in ALSO_NEEDED.items():
        if not role.allows(action, resource):
            missing.append(f"{action} on {resource}")
    assert not missing, "docs/deploy-role.yaml lacks:\n  " + "\n  ".join(missing)


def test_the_deploy_role_reaches_the_stacks_own_names(cfn):
    """Resource-scoped statements must match the names this template gives."""
    role = Role(ROLE_PARAMETERS)
    stack, account = "phone-auth-prod", "123456789012"
    names = {
        "dynamodb:CreateTable": f"arn:aws:dynamodb:us-east-1:{account}:table/{stack}-users",
        "logs:CreateLogGroup": f"arn:aws:logs:us-east-1:{account}:log-group:/aws/lambda/{stack}/get-code",
        "secretsmanager:CreateSecret": f"arn:aws:secretsmanager:us-east-1:{account}:secret:phone-auth/prod/otp-hmac-key-AbCdEf",
        "lambda:CreateFunction": f"arn:aws:lambda:us-east-1:{account}:function:{stack}-GetCodeFunction-AbC123",
        "iam:CreateRole": f"arn:aws:iam::{account}:role/{stack}-GetCodeFunctionRole-AbC123",
        "cloudwatch:PutMetricAlarm": f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{stack}-Api5xxRateAlarm-AbC123",
        "sns:CreateTopic": f"arn:aws:sns:us-east-1:{account}:{stack}-AlarmTopic-AbC123",
    }
    names["kms:CreateAlias"] = f"arn:aws:kms:us-east-1:{account}:alias/{stack}-functions"
    for action, arn in names.items():
        assert role.allows(action, arn), f"{action} on {arn}"
    assert not role.allows("kms:DeleteAlias", f"arn:aws:kms:us-east-1:{account}:alias/other-functions")
    # ...and nothing beyond them: another stack's table, the deploy role itself.
    assert not role.allows("dynamodb:DeleteTable", f"arn:aws:dynamodb:us-east-1:{account}:table/other-users")
    assert not role.allows("iam:AttachRolePolicy", f"arn:aws:iam::{account}:role/github-deploy-{stack}")
    assert not role.allows("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:us-east-1:{account}:secret:phone-auth/dev/x")

    # The names in template.yaml that those patterns rely on.
    sam = load("template.yaml")["Resources"]
    assert sam["UsersTable"]["Properties"]["TableName"] == {"Fn::Sub": "${AWS::StackName}-users"}
    assert sam["OtpHmacKeySecret"]["Properties"]["Name"] == {"Fn::Sub": "${SecretsPrefix}/${Stage}/otp-hmac-key"}
    assert sam["SessionsTable"]["Properties"]["TableName"] == {"Fn::Sub": "${AWS::StackName}-sessions"}
    assert sam["RefreshTokenKeySecret"]["Properties"]["Name"] == {
        "Fn::Sub": "${SecretsPrefix}/${Stage}/refresh-token-key"
    }
    assert sam["CursorKeySecret"]["Properties"]["Name"] == {"Fn::Sub": "${SecretsPrefix}/${Stage}/cursor-key"}
    assert sam["FunctionEnvironmentKeyAlias"]["Properties"]["AliasName"] == {"Fn::Sub": "alias/${AWS::StackName}-functions"}


def test_only_the_named_environment_may_assume_the_deploy_role():
    (statement,) = Role(ROLE_PARAMETERS).trust["Statement"]
    condition = statement["Condition"]
    assert set(condition) == {"StringEquals"}, "exact match, no StringLike wildcards"
    assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    subject = Role.evaluate(condition["StringEquals"]["token.actions.githubusercontent.com:sub"], ROLE_PARAMETERS)
    assert subject == "repo:owner/repo:environment:prod"


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_the_deploy_role_uses_kms_only_on_its_stacks_key():
    """Key IDs are random: the role's KMS permissions hold only for keys that
    carry its stack's tag, which template.yaml puts on the key at creation,
    apart from listing aliases and its own alias name."""
    tags = load("template.yaml")["Resources"]["FunctionEnvironmentKey"]["Properties"]["Tags"]
    assert {"Key": "phone-auth-stack", "Value": {"Ref": "AWS::StackName"}} in tags
    stack, account = ROLE_PARAMETERS["AppStackName"], ROLE_PARAMETERS["AWS::AccountId"]
    statements = [
        s for s in Role(ROLE_PARAMETERS).statements if any(a.startswith("kms:") for a in as_list(s["Action"]))
    ]
    assert statements
    for statement in statements:
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert all(a.startswith("kms:") and "*" not in a for a in actions), statement
        if actions == ["kms:ListAliases"]:
            continue
        if set(actions) <= {"kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"} and "Condition" not in statement:
            assert resources == [f"arn:aws:kms:us-east-1:{account}:alias/{stack}-functions"], statement
            continue
        equals = statement["Condition"]["StringEquals"]
        if resources == ["*"]:
            # Creating: the tag must be in the request (KMS wants TagResource on all keys for that).
            assert set(actions) == {"kms:CreateKey", "kms:TagResource"}, statement
            assert equals == {"aws:RequestTag/phone-auth-stack": stack}, statement
        else:
            assert resources == [f"arn:aws:kms:us-east-1:{account}:key/*"], statement
            assert equals == {"aws:ResourceTag/phone-auth-stack": stack}, statement
        if "kms:CreateGrant" in actions:
            assert actions == ["kms:CreateGrant"], "grants in a statement of their own"
            assert statement["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}, "grants only for Lambda"


# ------------------------------------------------------------------ the functions' environment key


def functions(cfn):
    return {i: r for i, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}


def test_every_function_environment_is_encrypted_with_the_stacks_own_key(cfn):
    # One per crate in functions/.
    assert len(functions(cfn)) == len([d for d in (ROOT / "functions").iterdir() if d.is_dir()])
    for logical_id, function in functions(cfn).items():
        assert function["Properties"].get("KmsKeyArn") == {"Fn::GetAtt": ["FunctionEnvironmentKey", "Arn"]}, logical_id
    key = cfn["Resources"]["FunctionEnvironmentKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    # Nothing but the functions' configuration is encrypted with it.
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Delete", "Delete")
    assert key["Properties"]["PendingWindowInDays"] == {"Fn::If": ["IsProd", 30, 7]}
    (alias,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::KMS::Alias"]
    assert alias["Properties"]["TargetKeyId"] == {"Ref": "FunctionEnvironmentKey"}


def test_only_the_function_roles_and_the_account_may_decrypt(cfn):
    """The key policy: the account (administration; other use only where an
    IAM policy grants it) and Decrypt for exactly the functions' roles,
    through Lambda, for this stack's functions."""
    statements = cfn["Resources"]["FunctionEnvironmentKey"]["Properties"]["KeyPolicy"]["Statement"]
    account, functions_statement = statements
    assert account == {
        "Sid": "AccountAdministersThroughIam",
        "Effect": "Allow",
        "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
        "Action": "kms:*",
        "Resource": "*",
    }
    roles = {function["Properties"]["Role"]["Fn::GetAtt"][0] for function in functions(cfn).values()}
    assert roles == {f"{logical_id}Role" for logical_id in functions(cfn)}, "one SAM role per function"
    principals = {
        p["Fn::GetAtt"][0] for p in when_optional_resources_exist(functions_statement["Principal"]["AWS"])
    }
    assert principals == roles
    assert functions_statement["Effect"] == "Allow"
    assert functions_statement["Action"] == "kms:Decrypt"
    assert functions_statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "lambda.${AWS::Region}.${AWS::URLSuffix}"}},
        "StringLike": {
            "kms:EncryptionContext:aws:lambda:FunctionArn": {
                "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-*"
            }
        },
    }
    # That pattern holds for CloudFormation's generated names (<stack>-<LogicalId>-<suffix>).
    for logical_id, function in functions(cfn).items():
        assert "FunctionName" not in function["Properties"], logical_id


def references(value):
    """Logical ids (and parameters) a CloudFormation value refers to."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            yield value["Ref"]
            return
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            yield target[0] if isinstance(target, list) else target.split(".")[0]
            return
        if set(value) == {"Fn::Sub"}:
            text, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
            for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
                if name not in variables:
                    yield name.split(".")[0]
            yield from references(variables)
            return
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def test_the_stack_has_no_circular_dependency(cfn):
    """CloudFormation refuses a cycle only at deploy time, and neither
    `sam validate --lint` nor cfn-lint sees one through the SAM transform
    (tried: the key policy naming a function's ARN). The functions refer to
    the key (KmsKeyArn), the key's policy to the functions' roles."""
    resources = cfn["Resources"]
    graph = {
        logical_id: {r for r in references(resource) if r in resources}
        | set(as_list(resource.get("DependsOn", [])))
        for logical_id, resource in resources.items()
    }
    assert "FunctionEnvironmentKey" in graph["GetCodeFunction"]
    assert "GetCodeFunctionRole" in graph["FunctionEnvironmentKey"]
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError("circular dependency: " + " -> ".join(path[path.index(node) :] + [node]))
        if node in done:
            return
        path.append(node)
        for dependency in sorted(graph[node]):
            visit(dependency)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


# ------------------------------------------------------------------ production traps


def test_a_failed_first_create_leaves_no_orphan_table():
    sam = load("template.yaml")["Resources"]
    assert sam["UsersTable"]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert sam["UsersTable"]["UpdateReplacePolicy"] == "Retain"
    for name in ("UsersTable", "OtpsTable", "SessionsTable"):
        assert "SSESpecification" not in sam[name]["Properties"], "AWS-owned key (docs/deploy.md)"
    samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for name, environment in samconfig.items():
        if isinstance(environment, dict) and "deploy" in environment:
            assert environment["deploy"]["parameters"].get("on_failure") == "DELETE", (
                f"[{name}] must delete a stack whose first create failed"
            )


def test_prod_requires_an_alarm_destination():
    rules = load("template.yaml")["Rules"]
    rule = rules["ProdAlarmsNotifySomebody"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}


def test_prod_names_the_countries_that_may_sign_in():
    """SMS pumping goes where SMS are dear: prod refuses "every country", and
    samconfig's prod and staging (prod's settings) give a real list."""
    rule = load("template.yaml")["Rules"]["ProdNamesItsCountries"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PhoneAllowedRegions"}, ""]}]}
    samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for stage in ("prod", "staging"):
        overrides = dict(
            pair.split("=", 1) for pair in samconfig[stage]["deploy"]["parameters"]["parameter_overrides"].split()
        )
        regions = overrides.get("PhoneAllowedRegions", "")
        assert matches("PhoneAllowedRegions", regions) and regions, f"[{stage}] PhoneAllowedRegions={regions!r}"


def test_test_numbers_need_their_last_day():
    rule = load("template.yaml")["Rules"]["TestNumbersExpire"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TestPhoneNumbers"}, ""]}]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TestPhoneNumbersExpire"}, ""]}]}
    assert load("template.yaml")["Parameters"]["TestPhoneNumbers"]["NoEcho"] is True, "the codes are credentials"


def test_sms_spend_has_two_alarms(cfn):
    """The service's own daily budget (get-code's SmsBudgetExhausted metric,
    from its request records), a country's (RegionBudgetExhausted), and SNS's
    account-wide month-to-date spend."""
    resources = cfn["Resources"]
    budget = resources["SmsBudgetExhaustedAlarm"]["Properties"]
    assert (budget["Namespace"], budget["MetricName"]) == (
        {"Fn::Sub": "PhoneAuth/${AWS::StackName}"},
        "SmsBudgetExhausted",
    )
    assert (budget["Statistic"], budget["Threshold"], budget["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    region = resources["RegionBudgetExhaustedAlarm"]["Properties"]
    assert (region["Namespace"], region["MetricName"], region["Threshold"]) == (
        {"Fn::Sub": "PhoneAuth/${AWS::StackName}"},
        "RegionBudgetExhausted",
        1,
    )
    assert "Dimensions" not in region, "the service-wide count; the Region dimension names the country"
    assert not [
        name for name, r in resources.items() if r["Type"] == "AWS::Logs::MetricFilter" and name != "ApiThrottledMetricFilter"
    ], "the functions' counts are EMF metrics (observe.rs), not log filters"
    spend = resources["SmsSpendAlarm"]
    assert spend["Condition"] == "UseSns"
    properties = spend["Properties"]
    assert (properties["Namespace"], properties["MetricName"], properties["Statistic"]) == (
        "AWS/SNS",
        "SMSMonthToDateSpentUSD",
        "Maximum",
    )
    assert "Dimensions" not in properties, "an account-level metric"
    assert properties["Threshold"] == {"Ref": "SmsMonthlySpendAlarmUsd"}
    for alarm in (budget, properties):
        assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}


def test_get_code_can_have_reserved_concurrency(cfn):
    function = cfn["Resources"]["GetCodeFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasGetCodeReservedConcurrency", {"Ref": "GetCodeReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


# ------------------------------------------------------------------ access log

# AWS's HTTP API access-log variables used here, and whether a value can
# contain a quote or backslash ("text") or not ("safe"); messageString is
# API Gateway's own quoted-and-escaped copy of the error message.
LOG_VARIABLES = {
    "$context.requestId": "safe",
    "$context.requestTime": "safe",  # dd/MMM/yyyy:HH:mm:ss +-hhmm
    "$context.identity.sourceIp": "safe",
    "$context.httpMethod": "safe",
    "$context.routeKey": "safe",  # our route keys, or $default
    "$context.status": "safe",
    "$context.integrationStatus": "safe",
    "$context.responseLatency": "safe",
    "$context.integrationLatency": "safe",
    "$context.responseLength": "safe",
    "$context.error.responseType": "safe",  # an enum
    "$context.error.messageString": "quoted",
    "$context.error.message": "text",
    "$context.integrationErrorMessage": "text",
    "$context.integration.error": "text",
    "$context.identity.userAgent": "text",
    "$context.path": "text",
}

WORST = {
    "safe": "-",
    "quoted": json.dumps('Message "with quotes" and \\ backslash'),
    "text": 'Mozilla "quoted" \\ text',
}


def access_log_format():
    api = load("template.yaml")["Resources"]["HttpApi"]["Properties"]
    return api["AccessLogSettings"]["Format"]


def check_access_log(line):
    """The line API Gateway writes for the worst values each variable can take."""
    used = re.findall(r"\$context\.[A-Za-z.]+[A-Za-z]", line)
    assert used, line
    for variable in used:
        kind = LOG_VARIABLES.get(variable)
        assert kind is not None, f"{variable}: not in AWS's list of HTTP API variables known to this test"
        assert kind != "text", f"{variable} can contain quotes and break the JSON line"
        if kind == "quoted":
            assert f'"{variable}"' not in line, f"{variable} is already quoted"
    for variable in sorted(set(used), key=len, reverse=True):
        line = line.replace(variable, WORST[LOG_VARIABLES[variable]])
    return json.loads(line)


def test_access_log_lines_are_valid_json_for_every_request():
    record = check_access_log(access_log_format())
    assert record["error"] == 'Message "with quotes" and \\ backslash'
    # The throttle alarm's metric filter reads these fields.
    assert {"status", "integrationStatus"} <= set(record)


def test_the_log_check_refuses_free_text_and_double_quoting():
    for broken in [
        '{"userAgent":"$context.identity.userAgent"}',
        '{"error":"$context.error.message"}',
        '{"error":"$context.error.messageString"}',
        '{"x":"$context.notAVariable"}',
    ]:
        with pytest.raises(AssertionError):
            check_access_log(broken)


# ------------------------------------------------------------------ parameters


def matches(parameter, value):
    declaration = load("template.yaml")["Parameters"][parameter]
    if len(value) > declaration.get("MaxLength", 4096):
        return False
    return re.fullmatch(declaration["AllowedPattern"], value) is not None


@pytest.mark.parametrize(
    "parameter, good, bad",
    [
        (
            "AlarmEmail",
            ["", "ops@example.com", "on-call+auth@mail.example.co.uk"],
            ["ops", "ops@example", "ops @example.com", "a@b@c.com", "ops@example.com,dev@example.com"],
        ),
        (
            "CorsOrigins",
            ["", "https://app.example.com", "http://127.0.0.1:5173,https://app.example.com"],
            [
                "app.example.com",
                "https://app.example.com/",
                "https://a.example.com, https://b.example.com",
                "https://app.example.com/path",
                "*",
                "https://app.example.com:123456",
            ],
        ),
        ("SnsSenderId", ["", "PhoneAuth", "A", "Auth2025", "ABCDEFGHIJK"], ["12345", "Phone Auth", "ABCDEFGHIJKL", "Auth-1"]),
        ("SecretsRevision", ["1", "2026-11-23", "v2.1"], ["", "two words", "x" * 33, "1;rm"]),
        (
            "SmsDailyBudgetByRegion",
            ["", "RU=50000", "RU=50000,KZ=2000", "KZ=0"],
            ["RU", "ru=5", "RU=5,", "RU=5, KZ=3", "RU=-1", "RUS=5", "RU=1.5"],
        ),
        ("SmsMaxPriceUsd", ["", "0.10", "1", "0.005", "12.5"], ["0", "0.00", "-1", "1e-2", ".5", "0.1.2", "$0.10"]),
        (
            "WebOtpDomain",
            ["", "app.example.com", "auth.example.co.uk", "a.b"],
            ["example", "https://app.example.com", "app.example.com/", ".example.com", "app.example.com.", "app example.com"],
        ),
        ("AndroidAppHash", ["", "FA+9qCX9VSu", "abcdefghijk"], ["FA+9qCX9VS", "FA+9qCX9VSuX", "FA+9qCX9VS=", "FA-9qCX9VSu"]),
        ("TestPhoneNumbersExpire", ["", "2026-12-31"], ["31.12.2026", "2026-12", "tomorrow"]),
        (
            "TestPhoneNumbers",
            ["", "+79990000000:1234", "+79990000000:1234,8 (999) 000-00-01:5678"],
            ["+79990000000", "+79990000000:", ":1234", "+79990000000:1234;", "+79990000000:123", "+79990000000:12345"],
        ),
    ],
)
def test_parameters_refuse_bad_values(parameter, good, bad):
    for value in good:
        assert matches(parameter, value), f"{parameter}={value!r} should be accepted"
    for value in bad:
        assert not matches(parameter, value), f"{parameter}={value!r} should be refused"
