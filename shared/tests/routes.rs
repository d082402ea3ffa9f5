//! One source of truth for routes, binaries, configuration and permissions:
//! template.yaml, the local router in Cargo.toml, the function crates,
//! samconfig.toml, events/ and the code must agree. Pure: reads files and
//! builds endpoints (which does no network I/O); needs no peer.
//!
//! The environment check is done by the code itself: for every function and
//! for several parameter sets (the defaults, each samconfig environment and
//! variations), the template's variables are evaluated like CloudFormation
//! would, secrets are replaced by valid test values, and the function's
//! endpoint is built from exactly those variables while every variable it
//! reads is recorded. A variable the code requires but the template does not
//! set fails the build; a variable the template sets but the code never reads
//! fails the check — except the service endpoints the AWS SDK reads
//! (`SDK_ENDPOINTS`), which must be declared, empty, by exactly the functions
//! whose roles may call that service.
//!
//! The DynamoDB permissions are checked against behaviour: during the
//! end-to-end run of `make test` a recorder between the functions and
//! DynamoDB Local notes every action each function needed, on which table or
//! index, and the one `#[ignore]`d test here (run by scripts/test.sh after the
//! end-to-end tests) compares that record with the template's grants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_http::http::Method;
use phone_auth::config::{Config, ConfigError};
use phone_auth::endpoints::{
    ANSWER_MARGIN, ClientProfile, DeleteAccount, Docs, Endpoint, GetCode, Jwks, ListReferrals,
    ListSessions, Login, Logout, LogoutAll, Refresh, Register, Retrieve, RevokeSession,
    SDK_OPERATION_TIMEOUT, SendCode, SetReferrer, UpdateClientProfile, Web,
};
use serde_json::{Map, Value, json};

// ------------------------------------------------------------------ the functions

type Build = fn(&Config) -> Result<(), ConfigError>;

/// What the function's cold start builds (`endpoints::run`), AWS SDK
/// configuration included.
fn build<E: Endpoint>(config: &Config) -> Result<(), ConfigError> {
    phone_auth::endpoints::build::<E>(config).map(|_| ())
}

/// What publish-events' cold start builds (`publish_events::run`).
fn build_publish_events(config: &Config) -> Result<(), ConfigError> {
    phone_auth::publish_events::PublishEvents::build(config).map(|_| ())
}

/// A function no route reaches: Lambda invokes it with another event.
struct EventFunction {
    binary: &'static str,
    /// What its `main` runs.
    runs: &'static str,
    build: Build,
}

/// Every function behind no route.
const EVENT_FUNCTIONS: [EventFunction; 1] = [EventFunction {
    binary: "publish-events",
    runs: "publish_events::run()",
    build: build_publish_events,
}];

fn is_event_function(binary: &str) -> bool {
    EVENT_FUNCTIONS.iter().any(|f| f.binary == binary)
}

/// Every function's binary and cold start, with or without a route.
fn every_build() -> impl Iterator<Item = (&'static str, Build)> {
    FUNCTIONS
        .into_iter()
        .map(|f| (f.binary, f.build))
        .chain(EVENT_FUNCTIONS.into_iter().map(|f| (f.binary, f.build)))
}

/// Variables Lambda itself sets in every function (reserved: never in the template).
const SET_BY_LAMBDA: [(&str, &str); 1] = [("AWS_REGION", "us-east-1")];

/// The functions that send sign-in codes by SMS: get_code, and step 1 of
/// seed-004's register and login.
const SENDS_CODES: [&str; 3] = ["get-code", "register", "login"];

/// The functions behind API Gateway's JWT authorizer (their routes want an
/// access token), named here so the checks that find them cannot quietly
/// find none.
const BEARER_FUNCTIONS: [&str; 9] = [
    "retrieve",
    "set-referrer",
    "logout-all",
    "list-sessions",
    "revoke-session",
    "delete-account",
    "client-profile",
    "update-client-profile",
    "list-referrals",
];

/// One function: its binary, the endpoint its `main` runs, and what the
/// code says of that endpoint.
struct Function {
    binary: &'static str,
    endpoint: &'static str,
    /// `Endpoint::NAME`.
    name: &'static str,
    method: Method,
    also_at_path: &'static [Method],
    /// `Endpoint::USES_AWS`.
    uses_aws: bool,
    build: Build,
    probe: Probe,
}

const fn function<E: Endpoint>(binary: &'static str, endpoint: &'static str) -> Function {
    Function {
        binary,
        endpoint,
        name: E::NAME,
        method: E::METHOD,
        also_at_path: E::ALSO_AT_PATH,
        uses_aws: E::USES_AWS,
        build: build::<E>,
        probe: probe::<E>,
    }
}

/// Every function, the one list this test keeps.
const FUNCTIONS: [Function; 18] = [
    function::<GetCode>("get-code", "GetCode"),
    function::<SendCode>("send-code", "SendCode"),
    function::<Refresh>("refresh", "Refresh"),
    function::<Retrieve>("retrieve", "Retrieve"),
    function::<SetReferrer>("set-referrer", "SetReferrer"),
    function::<Jwks>("jwks", "Jwks"),
    function::<Logout>("logout", "Logout"),
    function::<LogoutAll>("logout-all", "LogoutAll"),
    function::<ListSessions>("list-sessions", "ListSessions"),
    function::<RevokeSession>("revoke-session", "RevokeSession"),
    function::<DeleteAccount>("delete-account", "DeleteAccount"),
    function::<Register>("register", "Register"),
    function::<Login>("login", "Login"),
    function::<ClientProfile>("client-profile", "ClientProfile"),
    function::<UpdateClientProfile>("update-client-profile", "UpdateClientProfile"),
    function::<ListReferrals>("list-referrals", "ListReferrals"),
    function::<Web>("web", "Web"),
    function::<Docs>("docs", "Docs"),
];

fn function_of(binary: &str) -> Function {
    FUNCTIONS
        .into_iter()
        .find(|f| f.binary == binary)
        .unwrap_or_else(|| panic!("{binary} is not in FUNCTIONS"))
}

/// The secret each secret variable must come from (a Secrets Manager dynamic
/// reference, never a parameter), and a valid stand-in value for the check.
fn secret_for(variable: &str, reference: &str, keys: &(String, String)) -> Result<String, String> {
    let (expected, value): (&str, String) = match variable {
        "TOKEN_PRIVATE_KEY" => ("/token-private-key", keys.0.clone()),
        "TOKEN_PUBLIC_KEY" => ("/token-public-key", keys.1.clone()),
        "OTP_HMAC_KEY" => ("<OtpHmacKeySecret>", "k".repeat(64)),
        "REFRESH_TOKEN_KEY" => ("<RefreshTokenKeySecret>", "r".repeat(64)),
        "CURSOR_KEY" => ("<CursorKeySecret>", "c".repeat(64)),
        "SMSAERO_EMAIL" => ("/smsaero:SecretString:email", "sms@example.com".into()),
        "SMSAERO_API_KEY" => ("/smsaero:SecretString:api_key", "api-key".into()),
        _ => return Err(format!("{variable} is not a secret but reads {reference}")),
    };
    let id = reference
        .strip_prefix("{{resolve:secretsmanager:")
        .and_then(|r| r.strip_suffix("}}"))
        .ok_or_else(|| {
            format!("{variable} must be a {{{{resolve:secretsmanager:...}}}} reference, not {reference:?}")
        })?;
    if !id.ends_with(expected) {
        return Err(format!(
            "{variable} reads secret {id:?}, expected one ending in {expected:?}"
        ));
    }
    Ok(value)
}

/// The only variables a function may set that config.rs does not read: the
/// AWS SDK reads them. Each is the endpoint of one service's client
/// (`AWS_ENDPOINT_URL_<SERVICE>`); a function declares it exactly when its
/// role may call that service, with the value "", which the SDK loader in
/// endpoints/mod.rs treats as unset. Declared only so `sam local start-api
/// --env-vars` can point it at local/'s peers (scripts/tests/test_sam_local.py).
const SDK_ENDPOINTS: [(&str, &str); 3] = [
    ("AWS_ENDPOINT_URL_DYNAMODB", "dynamodb:"),
    ("AWS_ENDPOINT_URL_SNS", "sns:"),
    ("AWS_ENDPOINT_URL_EVENTBRIDGE", "events:"),
];

/// Paths a function answers at its own URL (a Lambda function URL: every
/// path reaches it), by binary. The jwks function's URL is the tokens'
/// issuer: the discovery document is served there only (on the API it would
/// name the API as issuer), the keys on the API too.
const FUNCTION_URL_PATHS: [(&str, &str); 2] = [
    ("jwks", "/.well-known/openid-configuration"),
    ("jwks", "/.well-known/jwks.json"),
];

const SECRET_VARIABLES: [&str; 7] = [
    "TOKEN_PRIVATE_KEY",
    "TOKEN_PUBLIC_KEY",
    "OTP_HMAC_KEY",
    "REFRESH_TOKEN_KEY",
    "CURSOR_KEY",
    "SMSAERO_EMAIL",
    "SMSAERO_API_KEY",
];

// ------------------------------------------------------------------ reading files

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ is inside the workspace")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// CloudFormation YAML as CloudFormation JSON: `!Ref X` → `{"Ref": "X"}`,
/// `!Sub s` → `{"Fn::Sub": s}`, `!Condition C` → `{"Condition": "C"}`.
fn to_json(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).expect("YAML numbers are JSON numbers"),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => panic!("non-string key {other:?} in template.yaml"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = match name {
                "Ref" | "Condition" => name.to_string(),
                _ => format!("Fn::{name}"),
            };
            json!({ key: to_json(tagged.value) })
        }
    }
}

fn template() -> Value {
    let yaml: serde_norway::Value =
        serde_norway::from_str(&read("template.yaml")).expect("template.yaml is YAML");
    to_json(yaml)
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> BTreeMap<&'a str, &'a Value> {
    template["Resources"]
        .as_object()
        .expect("template has Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// The template's functions by binary: (logical id, resource).
fn template_functions(template: &Value) -> BTreeMap<String, (String, Value)> {
    let mut functions = BTreeMap::new();
    for (id, resource) in resources_of_type(template, "AWS::Serverless::Function") {
        let metadata = &resource["Metadata"];
        assert_eq!(
            metadata["BuildMethod"], "rust-cargolambda",
            "{id}: every function is built by cargo lambda"
        );
        let binary = metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: Metadata.BuildProperties.Binary is missing"));
        assert_eq!(
            resource["Properties"]["CodeUri"], ".",
            "{id}: CodeUri is the workspace root, so sam build sees shared/ too"
        );
        let previous = functions.insert(binary.to_string(), (id.to_string(), resource.clone()));
        assert!(previous.is_none(), "two functions build binary {binary}");
    }
    functions
}

/// (path, method) of each of the function's HttpApi events (its routes).
fn template_routes(id: &str, function: &Value) -> Vec<(String, String)> {
    let binary = function["Metadata"]["BuildProperties"]["Binary"].as_str();
    if binary.is_some_and(is_event_function) {
        return Vec::new();
    }
    let events: Vec<&Value> = function["Properties"]["Events"]
        .as_object()
        .map(|e| e.values().collect())
        .unwrap_or_default();
    assert!(
        !events.is_empty(),
        "{id}: at least one event, an HTTP route"
    );
    events
        .into_iter()
        .map(|event| route_of(id, event))
        .collect()
}

fn route_of(id: &str, event: &Value) -> (String, String) {
    assert_eq!(
        event["Type"], "HttpApi",
        "{id}: the event is an HttpApi route"
    );
    let properties = &event["Properties"];
    assert_eq!(
        properties["ApiId"],
        json!({"Ref": "HttpApi"}),
        "{id}: the route belongs to the stack's HttpApi"
    );
    assert_eq!(
        properties["PayloadFormatVersion"], "2.0",
        "{id}: lambda_http reads payload 2.0"
    );
    (
        properties["Path"].as_str().expect("route path").to_string(),
        properties["Method"]
            .as_str()
            .expect("route method")
            .to_string(),
    )
}

fn cargo_toml(path: &str) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("{path} is not TOML: {e}"))
}

/// The methods API Gateway's `ANY` covers.
const API_METHODS: [&str; 7] = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];

/// The `cargo lambda watch` router: (path, method) → binary. An entry that
/// names one binary takes every method; a list names one per method.
fn local_router() -> BTreeMap<(String, String), String> {
    let manifest = cargo_toml("Cargo.toml");
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("Cargo.toml has [workspace.metadata.lambda.watch.router]");
    let mut routes = BTreeMap::new();
    for (path, entry) in router {
        match entry {
            toml::Value::String(binary) => {
                for method in API_METHODS {
                    routes.insert((path.clone(), method.to_string()), binary.clone());
                }
            }
            toml::Value::Array(by_method) => {
                for route in by_method {
                    let field = |name: &str| {
                        route.get(name).and_then(|v| v.as_str()).unwrap_or_else(|| {
                            panic!("router entry {path}: each item has a {name}")
                        })
                    };
                    let previous = routes.insert(
                        (path.clone(), field("method").to_string()),
                        field("function").to_string(),
                    );
                    assert!(previous.is_none(), "router entry {path}: a method twice");
                }
            }
            other => panic!("router entry {path} is neither a binary nor a list: {other}"),
        }
    }
    routes
}

/// functions/*/Cargo.toml: binary name → path of its main.rs.
fn function_crates() -> BTreeMap<String, PathBuf> {
    let mut binaries = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/ exists") {
        let dir = entry.expect("readable entry").path();
        let manifest_path = dir.join("Cargo.toml");
        if !manifest_path.exists() {
            continue;
        }
        let relative = manifest_path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let manifest = cargo_toml(&relative);
        let bins = manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .unwrap_or_else(|| panic!("{relative}: declare the binary with [[bin]]"));
        assert_eq!(bins.len(), 1, "{relative}: one function, one binary");
        let name = bins[0]["name"].as_str().expect("[[bin]] name").to_string();
        let main = bins[0]
            .get("path")
            .and_then(|p| p.as_str())
            .unwrap_or("src/main.rs");
        binaries.insert(name, dir.join(main));
    }
    binaries
}

// ------------------------------------------------------------------ evaluating the template

/// Just enough of CloudFormation to evaluate environment variables and policies.
struct Stack<'a> {
    template: &'a Value,
    parameters: BTreeMap<String, String>,
}

impl<'a> Stack<'a> {
    fn new(template: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let declared = template["Parameters"]
            .as_object()
            .expect("template has Parameters");
        let mut parameters = BTreeMap::new();
        for (name, declaration) in declared {
            let value = match &declaration["Default"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                other => panic!("parameter {name} has default {other}"),
            };
            parameters.insert(name.clone(), value);
        }
        for (name, value) in overrides {
            assert!(
                declared.contains_key(*name),
                "parameter {name} is set but template.yaml declares no such parameter"
            );
            if let Some(allowed) = declared[*name]["AllowedValues"].as_array() {
                let allowed: Vec<String> = allowed
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect();
                assert!(
                    allowed.contains(&value.to_string()),
                    "{name}={value} is not allowed"
                );
            }
            parameters.insert(name.to_string(), value.to_string());
        }
        Stack {
            template,
            parameters,
        }
    }

    fn is_resource(&self, name: &str) -> bool {
        self.template["Resources"].get(name).is_some()
    }

    /// `Ref` and `${...}`: parameter values; resources become `<LogicalId>`
    /// (their names and ARNs are not known before deploy).
    fn reference(&self, name: &str) -> Option<String> {
        if name == "AWS::NoValue" {
            return None;
        }
        if let Some(value) = self.parameters.get(name) {
            return Some(value.clone());
        }
        let (resource, attribute) = name.split_once('.').unwrap_or((name, ""));
        // SAM makes `<Function>Url` of a function's FunctionUrlConfig.
        if let Some(function) = resource.strip_suffix("Url")
            && attribute == "FunctionUrl"
            && self.template["Resources"][function]["Properties"]["FunctionUrlConfig"].is_object()
        {
            return Some(function_url(function));
        }
        assert!(
            self.is_resource(resource) || name.starts_with("AWS::"),
            "reference to unknown {name}"
        );
        Some(if attribute.is_empty() {
            format!("<{resource}>")
        } else {
            assert!(attribute == "Arn", "unexpected attribute {name}");
            format!("arn:<{resource}>")
        })
    }

    fn condition(&self, name: &str) -> bool {
        let definition = &self.template["Conditions"][name];
        assert!(!definition.is_null(), "unknown condition {name}");
        self.truth(definition)
    }

    fn truth(&self, expression: &Value) -> bool {
        let (function, args) = single_entry(expression);
        let args_list = || args.as_array().expect("condition arguments are a list");
        match function {
            "Condition" => self.condition(args.as_str().expect("condition name")),
            "Fn::Equals" => {
                let items = args_list();
                self.eval(&items[0]) == self.eval(&items[1])
            }
            "Fn::Not" => !self.truth(&args_list()[0]),
            "Fn::And" => args_list().iter().all(|c| self.truth(c)),
            "Fn::Or" => args_list().iter().any(|c| self.truth(c)),
            other => panic!("unsupported condition function {other}"),
        }
    }

    /// `!Sub text` or `!Sub [text, {name: value}]`.
    fn sub(&self, text: &str, variables: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed ${") + start;
            let name = &rest[start + 2..end];
            let value = match variables.get(name) {
                Some(value) => match self.eval(value) {
                    Some(Value::String(s)) => s,
                    other => panic!("${{{name}}} is {other:?}, not text"),
                },
                None => self.reference(name).expect("${} of a real value"),
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out + rest
    }

    /// The value as CloudFormation would compute it; None where it is removed (AWS::NoValue).
    fn eval(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, args) = map.iter().next().unwrap();
                match key.as_str() {
                    "Ref" => self
                        .reference(args.as_str().expect("Ref names"))
                        .map(Value::String),
                    "Fn::Sub" => Some(Value::String(match args {
                        Value::String(text) => self.sub(text, &Map::new()),
                        Value::Array(parts) => self.sub(
                            parts[0].as_str().expect("!Sub [text, ...]"),
                            parts[1].as_object().expect("!Sub [text, {variables}]"),
                        ),
                        other => panic!("!Sub {other}"),
                    })),
                    "Fn::Split" => {
                        let parts = args.as_array().expect("!Split [separator, text]");
                        let separator = parts[0].as_str().expect("!Split separator");
                        let text = self.eval(&parts[1]).expect("!Split of a value");
                        let text = text.as_str().expect("!Split of text");
                        Some(Value::Array(
                            text.split(separator).map(Value::from).collect(),
                        ))
                    }
                    "Fn::Select" => {
                        let parts = args.as_array().expect("!Select [index, list]");
                        let index = parts[0].as_u64().expect("!Select index") as usize;
                        let list = self.eval(&parts[1]).expect("!Select from a value");
                        Some(list[index].clone())
                    }
                    "Fn::GetAtt" => {
                        let name = match args {
                            Value::String(s) => s.clone(),
                            Value::Array(parts) => format!(
                                "{}.{}",
                                parts[0].as_str().unwrap(),
                                parts[1].as_str().unwrap()
                            ),
                            other => panic!("GetAtt {other}"),
                        };
                        self.reference(&name).map(Value::String)
                    }
                    "Fn::If" => {
                        let items = args.as_array().expect("!If takes a list");
                        let condition = items[0].as_str().expect("!If names a condition");
                        self.eval(&items[if self.condition(condition) { 1 } else { 2 }])
                    }
                    key if key.starts_with("Fn::") => panic!("unsupported intrinsic {key}"),
                    _ => Some(self.eval_object(map)),
                }
            }
            Value::Object(map) => Some(self.eval_object(map)),
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|i| self.eval(i)).collect(),
            )),
            other => Some(other.clone()),
        }
    }

    fn eval_object(&self, map: &Map<String, Value>) -> Value {
        Value::Object(
            map.iter()
                .filter_map(|(k, v)| self.eval(v).map(|v| (k.clone(), v)))
                .collect(),
        )
    }

    /// A function's environment: Globals merged with its own variables.
    fn environment(&self, function: &Value) -> BTreeMap<String, String> {
        let mut variables = BTreeMap::new();
        for source in [
            &self.template["Globals"]["Function"]["Environment"]["Variables"],
            &function["Properties"]["Environment"]["Variables"],
        ] {
            if let Some(Value::Object(evaluated)) = self.eval(source) {
                for (name, value) in evaluated {
                    let text = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => panic!("{name} evaluates to {other}"),
                    };
                    variables.insert(name, text);
                }
            }
        }
        variables
    }

    /// (action, resource) pairs a function's inline policies allow.
    fn permissions(&self, id: &str, function: &Value) -> BTreeSet<(String, String)> {
        let mut granted = BTreeSet::new();
        let policies = self
            .eval(&function["Properties"]["Policies"])
            .unwrap_or(Value::Null);
        for policy in policies.as_array().into_iter().flatten() {
            let statements = policy["Statement"]
                .as_array()
                .unwrap_or_else(|| panic!("{id}: only inline Statement policies (no SAM policy templates, no managed policies)"));
            for statement in statements {
                assert_eq!(statement["Effect"], "Allow", "{id}: {statement}");
                let actions: Vec<String> = match &statement["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
                    other => panic!("{id}: Action {other}"),
                };
                let resource = match (&statement["Resource"], &statement["NotResource"]) {
                    // An action that takes no resource (which ones may: below).
                    (Value::String(r), Value::Null) if r == "*" => r.clone(),
                    (Value::String(r), Value::Null) => r
                        .strip_prefix("arn:<")
                        .map(|r| r.replacen('>', "", 1))
                        .unwrap_or_else(|| {
                            panic!("{id}: {r} is not one of this stack's resources")
                        }),
                    (Value::Null, Value::String(r)) => format!("NOT {r}"),
                    _ => panic!(
                        "{id}: one Resource or NotResource string per statement: {statement}"
                    ),
                };
                for action in actions {
                    assert!(!action.contains('*'), "{id}: wildcard action {action}");
                    granted.insert((action, resource.clone()));
                }
            }
        }
        granted
    }
}

/// What `!GetAtt <Function>Url.FunctionUrl` is once deployed,
/// `https://<url id>.lambda-url.<region>.on.aws/` (the id here made of the
/// function's name).
fn function_url(function: &str) -> String {
    let region = SET_BY_LAMBDA[0].1;
    format!(
        "https://{}.lambda-url.{region}.on.aws/",
        function.to_ascii_lowercase()
    )
}

fn single_entry(value: &Value) -> (&str, &Value) {
    let map = value.as_object().expect("an intrinsic function");
    assert_eq!(map.len(), 1, "an intrinsic function has one key: {value}");
    let (k, v) = map.iter().next().unwrap();
    (k.as_str(), v)
}

/// `Stage=prod SmsProvider=sns` of each samconfig environment.
fn samconfig_parameter_sets() -> Vec<(String, Vec<(String, String)>)> {
    let samconfig = cargo_toml("samconfig.toml");
    let mut sets = Vec::new();
    for (environment, commands) in &samconfig {
        let Some(overrides) = commands
            .get("deploy")
            .and_then(|d| d.get("parameters"))
            .and_then(|p| p.get("parameter_overrides"))
            .and_then(|o| o.as_str())
        else {
            continue;
        };
        assert!(
            !overrides.contains(['"', '\'']),
            "keep samconfig overrides unquoted: {overrides}"
        );
        let pairs = overrides
            .split_whitespace()
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect("Name=Value");
                (k.to_string(), v.to_string())
            })
            .collect();
        sets.push((format!("samconfig [{environment}]"), pairs));
    }
    assert!(
        sets.len() >= 2,
        "samconfig.toml has dev and prod deploy parameters"
    );
    sets
}

fn parameter_sets() -> Vec<(String, Vec<(String, String)>)> {
    let own = |name: &str, pairs: &[(&str, &str)]| {
        (
            name.to_string(),
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let mut sets = vec![
        own("defaults", &[]),
        own(
            "SMS Aero in prod",
            &[
                ("Stage", "prod"),
                ("SmsProvider", "smsaero"),
                ("PhoneAllowedRegions", "RU,KZ"),
            ],
        ),
        own(
            "budgets and test phone numbers",
            &[
                ("Stage", "prod"),
                ("AlarmEmail", "ops@example.com"),
                ("PhoneAllowedRegions", "RU,KZ"),
                ("OtpMaxSendsPerIp", "20"),
                ("OtpMaxChecksPerIp", "40"),
                ("SmsDailyBudget", "0"),
                ("SmsDailyBudgetByRegion", "RU=50000,KZ=2000"),
                ("TestPhoneNumbers", "+79990000000:1234,8 999 000-00-01:5678"),
                ("TestPhoneNumbersExpire", "2099-12-31"),
            ],
        ),
        own(
            "SMS texts, autofill and a price cap",
            &[
                ("SmsMaxPriceUsd", "0.05"),
                ("SmsTemplateRu", "Ваш код {code}, действует {minutes} мин."),
                ("SmsTemplateEn", "Your code: {code}"),
                ("WebOtpDomain", "app.example.com"),
                ("AndroidAppHash", "FA+9qCX9VSu"),
            ],
        ),
        own(
            "SNS with a sender ID, CORS and alarm e-mail",
            &[
                ("SmsProvider", "sns"),
                ("SnsSenderId", "PhoneAuth"),
                ("CorsOrigins", "https://app.example.com"),
                ("AlarmEmail", "ops@example.com"),
            ],
        ),
    ];
    sets.extend(samconfig_parameter_sets());
    sets
}

/// The template evaluated under each of [`parameter_sets`].
fn stacks(template: &Value) -> Vec<(String, Stack<'_>)> {
    parameter_sets()
        .into_iter()
        .map(|(name, overrides)| {
            let overrides: Vec<(&str, &str)> = overrides
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (name, Stack::new(template, &overrides))
        })
        .collect()
}

/// Every variable name config.rs reads: `self.required("X")`, `self.get("X")`,
/// `self.positive("X", ...)`, ...
fn variables_in_config_rs() -> BTreeSet<String> {
    // Without whitespace, so calls split over lines (`self\n    .get(`) match too.
    let source: String = read("shared/src/config.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut names = BTreeSet::new();
    for accessor in ["required", "get", "number", "positive", "multiline"] {
        let pattern = format!("self.{accessor}(\"");
        for (at, _) in source.match_indices(&pattern) {
            let rest = &source[at + pattern.len()..];
            names.insert(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    names.retain(|n| !n.is_empty());
    assert!(
        names.len() >= 10,
        "config.rs reads its variables through self.required/get/number/positive/multiline"
    );
    names
}

/// What a function's process sees: the template's variables with each
/// secret replaced by a valid stand-in, and what Lambda sets. Errors name a
/// secret variable that is not read from its secret.
fn process_environment(
    env: &BTreeMap<String, String>,
    keys: &(String, String),
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, value) in env {
        let is_reference = value.contains("{{resolve:");
        if SECRET_VARIABLES.contains(&name.as_str()) || is_reference {
            match secret_for(name, value, keys) {
                Ok(secret) => {
                    values.insert(name.clone(), secret);
                }
                Err(e) => errors.push(e),
            }
        } else {
            values.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in SET_BY_LAMBDA {
        values.insert(name.to_string(), value.to_string());
    }
    (values, errors)
}

fn config_of(values: BTreeMap<String, String>) -> Config {
    Config::from_lookup(move |name| values.get(name).cloned())
}

/// A request as the Lambda runtime reads it from a payload 2.0 event: at
/// API Gateway (`route_key` `ANY <route>`) or at a function URL (`$default`).
fn lambda_request(method: &str, host: &str, path: &str, route_key: &str) -> lambda_http::Request {
    let context = json!({
        "accountId": "123456789012", "apiId": "id", "domainName": host, "domainPrefix": "id",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.10", "userAgent": "routes-test"},
        "requestId": "r", "routeKey": route_key, "stage": "$default",
        "time": "22/Nov/2026:01:00:00 +0000", "timeEpoch": 1_795_309_200_000u64,
    });
    let event = json!({
        "version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": "",
        "headers": {"host": host, "x-forwarded-proto": "https"},
        "requestContext": context, "isBase64Encoded": false,
    });
    let event: lambda_http::request::LambdaRequest =
        serde_json::from_value(event).expect("a payload 2.0 event");
    lambda_http::Request::from(event)
}

type Probe = fn(&Config, Option<&str>, &str, &str) -> (u16, Option<String>);

/// The function's answer to one request through API Gateway (the endpoint's
/// method unless `method` says otherwise; no token, no body), built from
/// `config` as its cold start builds it: (status, error code).
fn probe<E: Endpoint>(
    config: &Config,
    method: Option<&str>,
    raw_path: &str,
    route_key: &str,
) -> (u16, Option<String>) {
    let own = E::METHOD;
    let request = lambda_request(
        method.unwrap_or(own.as_str()),
        "api.example.com",
        raw_path,
        route_key,
    );
    let function = phone_auth::endpoints::build::<E>(config)
        .unwrap_or_else(|e| panic!("{} would not start: {e}", E::NAME));
    let response = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(function.serve(request));
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    let code = body["code"].as_str().map(str::to_string);
    (response.status().as_u16(), code)
}

/// The HttpApi's JWT authorizers, evaluated: name → (issuer, audience).
fn authorizers(stack: &Stack) -> BTreeMap<String, (String, Vec<String>)> {
    let auth = stack
        .eval(&stack.template["Resources"]["HttpApi"]["Properties"]["Auth"])
        .unwrap_or(Value::Null);
    let mut found = BTreeMap::new();
    for (name, authorizer) in auth["Authorizers"].as_object().into_iter().flatten() {
        assert_eq!(
            authorizer["IdentitySource"], "$request.header.Authorization",
            "{name}: the bearer header"
        );
        let jwt = &authorizer["JwtConfiguration"];
        let issuer = jwt["issuer"].as_str().expect("an issuer").to_string();
        let audience = jwt["audience"]
            .as_array()
            .expect("an audience list")
            .iter()
            .map(|a| a.as_str().expect("an audience").to_string())
            .collect();
        found.insert(name.clone(), (issuer, audience));
    }
    found
}

/// The authorizer a function's route names (`Auth.Authorizer`), if any.
fn route_authorizer(event: &Value) -> Option<String> {
    event["Properties"]["Auth"]["Authorizer"]
        .as_str()
        .map(str::to_string)
}

// ------------------------------------------------------------------ the checks

#[test]
fn template_router_and_crates_agree_on_every_route_and_binary() {
    let template = template();
    let functions = template_functions(&template);
    let router = local_router();
    let crates = function_crates();

    // Every route: (path, method, binary). ANY, OPTIONS beside a bearer
    // route for preflights (checked in
    // the_authorizer_guards_exactly_the_routes_whose_function_wants_a_token),
    // or one method that another function's ANY route at the same path
    // leaves to this function (seed-004's PATCH profile).
    let routes: Vec<(String, String, String)> = functions
        .iter()
        .filter(|(binary, _)| !is_event_function(binary))
        .flat_map(|(binary, (id, resource))| {
            template_routes(id, resource)
                .into_iter()
                .map(move |(path, method)| (binary.clone(), id.clone(), path, method))
        })
        .map(|(binary, id, path, method)| {
            assert!(
                path.starts_with('/') && (path == "/" || !path.ends_with('/')),
                "{id}: HTTP API route paths cannot end in '/' (API Gateway refuses {path:?}, \
                 all but the root `/`); it serves {path}/ on the route without the slash"
            );
            if method != "ANY" && method != "OPTIONS" {
                assert_eq!(
                    method,
                    function_of(&binary).method.as_str(),
                    "{id}: a route for one method is for the function's own method"
                );
            }
            (path, method, binary)
        })
        .collect();
    let paths: BTreeSet<String> = routes.iter().map(|(path, ..)| path.clone()).collect();
    for path in &paths {
        let at_path: Vec<&(String, String, String)> =
            routes.iter().filter(|(p, ..)| p == path).collect();
        assert!(
            at_path.iter().any(|(_, method, _)| method == "ANY"),
            "{path}: one route is ANY, so a wrong method gets a function's own 405, as locally"
        );
        // Functions sharing a path name each other's methods in their 405s
        // and preflight answers.
        let binaries: BTreeSet<&String> = at_path.iter().map(|(.., b)| b).collect();
        for binary in &binaries {
            let own = function_of(binary);
            let mut others: Vec<String> = binaries
                .iter()
                .filter(|b| **b != *binary)
                .map(|b| function_of(b).method.to_string())
                .collect();
            let mut declared: Vec<String> =
                own.also_at_path.iter().map(Method::to_string).collect();
            others.sort();
            declared.sort();
            assert_eq!(
                declared, others,
                "{binary}: ALSO_AT_PATH names the methods the other functions at {path} serve"
            );
        }
    }

    // The paths a function answers at its own URL are served on the same
    // local router (there is one local address).
    let with_url: BTreeSet<&str> = functions
        .iter()
        .filter(|(_, (_, resource))| resource["Properties"]["FunctionUrlConfig"].is_object())
        .map(|(binary, _)| binary.as_str())
        .collect();
    let named: BTreeSet<&str> = FUNCTION_URL_PATHS.iter().map(|(b, _)| *b).collect();
    assert_eq!(
        with_url, named,
        "functions with a FunctionUrlConfig vs FUNCTION_URL_PATHS"
    );
    let url_paths = FUNCTION_URL_PATHS
        .iter()
        .map(|(binary, path)| (path.to_string(), "ANY".to_string(), binary.to_string()));
    // Which function each method of each path reaches. API Gateway answers
    // both spellings on one route; the local router matches exactly, so it
    // lists each path with and without the slash.
    let mut served: BTreeMap<(String, String), String> = BTreeMap::new();
    let (any, specific): (Vec<_>, Vec<_>) = routes
        .into_iter()
        .chain(url_paths)
        .partition(|(_, method, _)| method == "ANY");
    // API Gateway prefers a route for the method to the path's ANY route.
    for (path, method, binary) in any.into_iter().chain(specific) {
        // The root has one spelling.
        let spellings = if path == "/" {
            vec![path.clone()]
        } else {
            vec![path.clone(), format!("{path}/")]
        };
        for spelling in spellings {
            let methods = if method == "ANY" {
                API_METHODS.to_vec()
            } else {
                vec![method.as_str()]
            };
            for m in methods {
                served.insert((spelling.clone(), m.to_string()), binary.clone());
            }
        }
    }
    assert_eq!(
        served, router,
        "template.yaml HttpApi routes and FUNCTION_URL_PATHS, each with and without a final slash (left), \
         and the Cargo.toml watch router (right) differ"
    );

    let stated: BTreeSet<String> = every_build()
        .map(|(binary, _)| binary.to_string())
        .collect();
    let in_template: BTreeSet<String> = functions.keys().cloned().collect();
    let in_crates: BTreeSet<String> = crates.keys().cloned().collect();
    assert_eq!(
        in_template, in_crates,
        "template Binary names vs functions/*/Cargo.toml [[bin]]"
    );
    assert_eq!(
        in_template, stated,
        "template functions vs this test's FUNCTIONS table"
    );

    // The endpoint's NAME, the app name in its AWS requests, is its binary's.
    for Function {
        binary,
        endpoint,
        name,
        ..
    } in FUNCTIONS
    {
        let main = std::fs::read_to_string(&crates[binary]).expect("main.rs");
        assert!(
            main.contains(&format!("run::<{endpoint}>()")),
            "functions/{binary}: main should run the {endpoint} endpoint"
        );
        assert_eq!(name, binary, "{endpoint}::NAME");
    }
    for EventFunction { binary, runs, .. } in EVENT_FUNCTIONS {
        let main = std::fs::read_to_string(&crates[binary]).expect("main.rs");
        assert!(
            main.contains(runs),
            "functions/{binary}: main should run {runs}"
        );
    }
    assert_eq!(
        phone_auth::publish_events::NAME,
        "publish-events",
        "publish_events::NAME is its binary's"
    );

    // Per-route settings must name real route keys, or they silently apply to nothing.
    let api = &template["Resources"]["HttpApi"]["Properties"];
    let route_keys: BTreeSet<String> = paths.iter().map(|p| format!("ANY {p}")).collect();
    let throttled: Vec<&String> = api["RouteSettings"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert!(
        throttled.contains(&&"ANY /users/auth/get_code".to_string()),
        "the SMS-sending route has its own, stricter throttling"
    );
    for key in throttled {
        assert!(
            route_keys.contains(key),
            "RouteSettings names {key:?}, which is no route"
        );
    }
    for setting in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        assert!(
            !api["DefaultRouteSettings"][setting].is_null(),
            "default {setting}"
        );
    }
}

#[test]
fn functions_are_arm64_traced_and_log_to_their_own_group() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    let setting = |resource: &Value, name: &str| -> Value {
        let own = &resource["Properties"][name];
        if own.is_null() {
            globals[name].clone()
        } else {
            own.clone()
        }
    };
    for (binary, (id, resource)) in template_functions(&template) {
        assert_eq!(setting(&resource, "Runtime"), "provided.al2023", "{binary}");
        assert_eq!(
            setting(&resource, "Architectures"),
            json!(["arm64"]),
            "{binary}"
        );
        assert_eq!(setting(&resource, "Handler"), "bootstrap", "{binary}");
        // X-Ray as the stack's parameter says (off by default; docs/operations.md).
        assert_eq!(
            setting(&resource, "Tracing"),
            json!({ "Ref": "XRayTracing" }),
            "{binary}"
        );
        assert!(
            setting(&resource, "MemorySize").is_u64(),
            "{binary}: MemorySize"
        );
        // The deadline rule: the function's own JSON 503 comes ANSWER_MARGIN
        // before Lambda's timeout, and at least one whole SDK operation fits.
        let timeout = Duration::from_secs(
            setting(&resource, "Timeout")
                .as_u64()
                .unwrap_or_else(|| panic!("{binary}: Timeout")),
        );
        assert!(
            timeout >= SDK_OPERATION_TIMEOUT * 2 + ANSWER_MARGIN,
            "{binary}: Timeout {timeout:?} leaves no room for two SDK operations \
             ({SDK_OPERATION_TIMEOUT:?} each) and the answer margin ({ANSWER_MARGIN:?})"
        );
        let group = resource["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup refers to its log group"));
        let log_group = &template["Resources"][group];
        assert_eq!(log_group["Type"], "AWS::Logs::LogGroup", "{id}");
        assert!(
            !log_group["Properties"]["RetentionInDays"].is_null(),
            "{group}: logs expire"
        );
    }
}

#[test]
fn alarms_watch_every_function() {
    let template = template();
    let functions: BTreeSet<String> = template_functions(&template)
        .values()
        .map(|(id, _)| id.clone())
        .collect();
    // A metric math alarm watches at most 10 metrics: each kind is split in
    // three, and the docs function, which only DocsEnabled stacks have, has its own.
    for alarms in [
        [
            "FunctionErrorsAlarm",
            "AccountFunctionErrorsAlarm",
            "Seed004FunctionErrorsAlarm",
            "DocsFunctionErrorsAlarm",
        ],
        [
            "FunctionThrottlesAlarm",
            "AccountFunctionThrottlesAlarm",
            "Seed004FunctionThrottlesAlarm",
            "DocsFunctionThrottlesAlarm",
        ],
    ] {
        let mut watched = BTreeSet::new();
        for alarm in alarms {
            let metrics = template["Resources"][alarm]["Properties"]["Metrics"]
                .as_array()
                .unwrap_or_else(|| panic!("{alarm} is missing"));
            let functions: Vec<String> = metrics
                .iter()
                .filter_map(|m| m["MetricStat"]["Metric"]["Dimensions"].as_array())
                .flatten()
                .filter_map(|d| d["Value"]["Ref"].as_str().map(str::to_string))
                .collect();
            assert!(
                functions.len() <= 10,
                "{alarm} watches more than 10 metrics"
            );
            for function in functions {
                assert!(watched.insert(function), "{alarm}: watched twice");
            }
        }
        assert_eq!(
            watched, functions,
            "{alarms:?} cover exactly the stack's functions"
        );
    }
    for alarm in ["Api5xxRateAlarm", "ApiThrottlesAlarm"] {
        assert_eq!(
            template["Resources"][alarm]["Type"], "AWS::CloudWatch::Alarm",
            "{alarm}"
        );
    }
}

#[test]
fn every_function_gets_exactly_the_variables_its_code_reads() {
    let template = template();
    let functions = template_functions(&template);
    let keys = phone_auth::token::generate_key_pair();
    let mut read_somewhere = BTreeSet::new();
    let mut problems = Vec::new();

    for (set_name, stack) in stacks(&template) {
        let mut seen: Vec<(String, BTreeMap<String, String>, BTreeSet<String>)> = Vec::new();

        for (binary, build) in every_build() {
            let (id, resource) = &functions[binary];
            let env = stack.environment(resource);
            let context = format!("{set_name}: {id}");

            let (values, errors) = process_environment(&env, &keys);
            problems.extend(errors.into_iter().map(|e| format!("{context}: {e}")));
            let read = Arc::new(Mutex::new(BTreeSet::new()));
            let recorder = Arc::clone(&read);
            let config = Config::from_lookup(move |name| {
                recorder.lock().unwrap().insert(name.to_string());
                values.get(name).cloned()
            });
            if let Err(err) = build(&config) {
                problems.push(format!("{context}: the function would not start: {err}"));
            }
            let read = read.lock().unwrap().clone();
            let calls = stack.permissions(id, resource);
            for (variable, service) in SDK_ENDPOINTS {
                let has_client = calls.iter().any(|(action, _)| action.starts_with(service));
                match env.get(variable) {
                    Some(value) if !has_client => problems.push(format!(
                        "{context}: sets {variable}={value:?} but may not call {service}*"
                    )),
                    Some(value) if !value.is_empty() => problems.push(format!(
                        "{context}: {variable} must be \"\" in the template (deployed: the \
                         SDK's own endpoint), not {value:?}"
                    )),
                    None if has_client => problems.push(format!(
                        "{context}: may call {service}* but does not declare {variable}, \
                         so `sam local --env-vars` cannot point it at local/'s peer"
                    )),
                    _ => {}
                }
            }
            for name in env.keys() {
                if SDK_ENDPOINTS.iter().any(|(variable, _)| variable == name) {
                    continue; // read by the SDK, checked above
                }
                // Globals' variables reach every function (SAM cannot leave
                // one out): one behind no route ignores the API's CORS
                // origins, and reports no requests (its health is the
                // stream's IteratorAge and dead-letter alarms).
                if is_event_function(binary)
                    && ["CORS_ALLOW_ORIGINS", "METRICS_NAMESPACE"].contains(&name.as_str())
                {
                    continue;
                }
                if !read.contains(name) {
                    problems.push(format!(
                        "{context}: sets {name}, which the function never reads"
                    ));
                }
            }
            read_somewhere.extend(read.iter().cloned());
            seen.push((binary.to_string(), env, read));
        }

        // A setting two functions both read must be the same for both
        // (tables, OTP and phone rules, token issuer and audience, keys).
        for (i, (a, env_a, read_a)) in seen.iter().enumerate() {
            for (b, env_b, read_b) in &seen[i + 1..] {
                for name in read_a.intersection(read_b) {
                    // The jwks function takes the issuer from the requests
                    // to its own URL, which it cannot be given (a cycle):
                    // the_issuer_the_authorizer_trusts_is_the_one_the_functions_sign_and_serve.
                    if name == "TOKEN_ISSUER" && (a == "jwks" || b == "jwks") {
                        continue;
                    }
                    // Empty counts as unset (config.rs), e.g. the SDK endpoints.
                    let value = |env: &BTreeMap<String, String>| {
                        env.get(name).filter(|v| !v.trim().is_empty()).cloned()
                    };
                    if value(env_a) != value(env_b) {
                        problems.push(format!(
                            "{set_name}: {a} and {b} both read {name} but get {:?} and {:?}",
                            env_a.get(name),
                            env_b.get(name)
                        ));
                    }
                }
            }
        }
    }

    let in_code = variables_in_config_rs();
    let unread: Vec<&String> = in_code.difference(&read_somewhere).collect();
    if !unread.is_empty() {
        problems.push(format!(
            "config.rs reads {unread:?}, but no function does for any parameter set checked here"
        ));
    }
    let unknown: Vec<&String> = read_somewhere.difference(&in_code).collect();
    if !unknown.is_empty() {
        problems.push(format!(
            "functions read {unknown:?}, not found in config.rs by this test"
        ));
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// The stack's tables by the variable holding a table's name (`UsersTable` →
/// `USERS_TABLE`, as scripts/create_tables.py names them).
fn table_variable(logical_id: &str) -> String {
    let mut name = String::new();
    for (i, c) in logical_id.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// `Table` or `Table/index/Name`, for a table of this stack.
fn is_stack_table_resource(template: &Value, resource: &str) -> bool {
    let table = resource.split('/').next().unwrap_or_default();
    resources_of_type(template, "AWS::DynamoDB::Table").contains_key(table)
}

/// What each function that calls AWS may do beyond its tables: open its
/// DynamoDB connection at init (adapters::dynamo::open_connections)...
const OPEN_CONNECTION: (&str, &str) = ("dynamodb:DescribeEndpoints", "*");

/// ...and, for one that sends codes through SNS, its SNS connection
/// (adapters::sms::SnsSms::open_connection).
const OPEN_SNS_CONNECTION: (&str, &str) = ("sns:GetSMSAttributes", "*");

#[test]
fn only_functions_that_send_codes_may_publish_sms_and_every_other_grant_is_on_a_table() {
    let template = template();
    let functions = template_functions(&template);
    let mut problems = Vec::new();
    for (set_name, stack) in stacks(&template) {
        for Function {
            binary, uses_aws, ..
        } in FUNCTIONS
        {
            let (id, resource) = &functions[binary];
            let mut granted = stack.permissions(id, resource);
            let sends_sms =
                SENDS_CODES.contains(&binary) && stack.parameters["SmsProvider"] == "sns";
            // Each grant beyond the tables: (action, resource), whether this
            // function needs it, and which functions do.
            for ((action, on), needed, why) in [
                (OPEN_CONNECTION, uses_aws, "call AWS"),
                (
                    ("sns:Publish", "NOT arn:aws:sns:*:*:*"),
                    sends_sms,
                    "send SMS through SNS, to phone numbers only",
                ),
                (OPEN_SNS_CONNECTION, sends_sms, "send SMS through SNS"),
            ] {
                if granted.remove(&(action.into(), on.into())) != needed {
                    problems.push(format!(
                        "{set_name}: {id} {} {action} on {on}: it is for the functions that {why}",
                        if needed { "needs" } else { "must not have" },
                    ));
                }
            }
            // Which DynamoDB actions exactly: compared with the end-to-end run's record, below.
            for (action, resource) in granted {
                if !action.starts_with("dynamodb:")
                    || !is_stack_table_resource(&template, &resource)
                {
                    problems.push(format!(
                        "{set_name}: {id} is granted {action} on {resource}, \
                         neither SMS nor DynamoDB on one of the stack's tables"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// Least privilege, from behaviour: in `make test`'s end-to-end run, the
/// DynamoDB recorder (`bench record`, bench/harness/src/recorder.rs) stood
/// between the functions and DynamoDB Local and wrote every (function, IAM
/// action, table or index) it saw to the file named by `DYNAMODB_RECORD`.
/// Each function must be granted exactly those: nothing it needed missing,
/// nothing it never used granted. A grant only some path the end-to-end tests
/// never take would need counts as extra, until an end-to-end test takes it.
#[test]
#[ignore = "needs the record of an end-to-end run; make test runs it"]
fn each_function_is_granted_exactly_the_dynamodb_actions_it_was_seen_to_use() {
    let path = std::env::var("DYNAMODB_RECORD")
        .expect("DYNAMODB_RECORD names the recorder's file (scripts/test.sh sets it)");
    let path = root().join(path).display().to_string();
    let template = template();
    let functions = template_functions(&template);

    // The record names tables as created for the run; the template by logical id.
    let tables: BTreeMap<String, String> = resources_of_type(&template, "AWS::DynamoDB::Table")
        .into_keys()
        .map(|id| {
            let variable = table_variable(id);
            let name = std::env::var(&variable).unwrap_or_else(|_| {
                panic!("{variable} (the name of {id} in this run) is set by scripts/test.sh")
            });
            (name, id.to_string())
        })
        .collect();

    let mut used: BTreeMap<&str, BTreeSet<(String, String)>> = every_build()
        .map(|(binary, _)| (binary, BTreeSet::new()))
        .collect();
    let mut problems = Vec::new();
    let record = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for line in record.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: {e}: {line}"));
        let action = entry["action"].as_str().expect("action").to_string();
        let resource = entry["resource"].as_str().expect("resource");
        let (table, index) = resource.split_once('/').unwrap_or((resource, ""));
        let caller = match entry["function"].as_str() {
            Some(function) => function.to_string(),
            None => "a request naming no function".to_string(),
        };
        let id = if (action.as_str(), resource) == OPEN_CONNECTION {
            Some(OPEN_CONNECTION.1.to_string())
        } else {
            tables.get(table).cloned()
        };
        let Some(id) = id else {
            problems.push(format!(
                "{caller} needed {action} on {resource}, which is none of the stack's tables"
            ));
            continue;
        };
        let resource = if index.is_empty() {
            id.clone()
        } else {
            format!("{id}/{index}")
        };
        match entry["function"].as_str().and_then(|f| used.get_mut(f)) {
            Some(set) => {
                set.insert((action, resource));
            }
            None => problems.push(format!(
                "{caller} needed {action} on {resource}: every request must come from one \
                 of the functions, named by app/<Endpoint::NAME> in its user agent"
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "requests recorded in {path}:\n  {}",
        problems.join("\n  ")
    );
    assert!(
        used.values().any(|set| !set.is_empty()),
        "{path} records no request of any function: did they reach DynamoDB through the recorder?"
    );

    // The same difference for every parameter set is reported once.
    let sets = parameter_sets();
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (set_name, overrides) in &sets {
        let overrides: Vec<(&str, &str)> = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let stack = Stack::new(&template, &overrides);
        for (binary, _) in every_build() {
            let (id, resource) = &functions[binary];
            let granted: BTreeSet<(String, String)> = stack
                .permissions(id, resource)
                .into_iter()
                .filter(|(action, _)| action.starts_with("dynamodb:"))
                .collect();
            let seen = &used[binary];
            for (action, resource) in seen.difference(&granted) {
                found
                    .entry(format!(
                        "{id} is not granted {action} on {resource}, which it used in the end-to-end run"
                    ))
                    .or_default()
                    .push(set_name.clone());
            }
            for (action, resource) in granted.difference(seen) {
                found
                    .entry(format!(
                        "{id} is granted {action} on {resource}, which it never used in the \
                         end-to-end run (remove the grant, or add the end-to-end case that needs it)"
                    ))
                    .or_default()
                    .push(set_name.clone());
            }
        }
    }
    for (problem, in_sets) in found {
        if in_sets.len() == sets.len() {
            problems.push(problem);
        } else {
            problems.push(format!("{problem} [with {}]", in_sets.join("; ")));
        }
    }
    assert!(
        problems.is_empty(),
        "DynamoDB permissions in template.yaml vs the requests recorded in {path}:\n  {}",
        problems.join("\n  ")
    );
}

/// The OpenAPI document (endpoints::openapi, served by the docs function)
/// describes exactly the routes template.yaml serves, in both directions:
/// each route's path (the document spells it with the final slash the
/// seeds' clients use), the method its function serves (an `ANY` route is
/// its function's `METHOD`; preflight `OPTIONS` routes are CORS, no
/// operation), the function, and whether API Gateway's JWT authorizer
/// guards it (the document's bearer security).
#[test]
fn the_openapi_document_describes_exactly_the_routes_of_the_template() {
    let template = template();
    let mut served = BTreeSet::new();
    for (binary, (id, resource)) in template_functions(&template) {
        if is_event_function(&binary) {
            continue;
        }
        for event in resource["Properties"]["Events"]
            .as_object()
            .unwrap()
            .values()
        {
            let (path, method) = route_of(&id, event);
            if method == "OPTIONS" {
                continue;
            }
            let method = if method == "ANY" {
                function_of(&binary).method.to_string()
            } else {
                method
            };
            let bearer = route_authorizer(event).is_some();
            served.insert((path, method, binary.clone(), bearer));
        }
    }
    let documented: BTreeSet<(String, String, String, bool)> =
        phone_auth::endpoints::openapi::operations()
            .into_iter()
            .map(|op| {
                // The root stays "/"; every other path is routed without its final slash.
                let path = match op.path {
                    "/" => "/",
                    path => path.strip_suffix('/').unwrap_or(path),
                }
                .to_string();
                (
                    path,
                    op.method.to_string(),
                    op.function.to_string(),
                    op.bearer,
                )
            })
            .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "(path, method, function, bearer) routes in template.yaml but not in the OpenAPI \
         document: {missing:?}; in the document but not in template.yaml: {extra:?}"
    );
}

/// Whether API Gateway sends `raw_path` to the route `path`: the same
/// segments, with or without a final slash, a `{name}` segment standing for
/// any one non-empty segment.
fn route_matches(path: &str, raw_path: &str) -> bool {
    if path == "/" {
        return raw_path == "/";
    }
    let raw = raw_path.strip_suffix('/').unwrap_or(raw_path);
    let (route, raw): (Vec<&str>, Vec<&str>) =
        (path.split('/').collect(), raw.split('/').collect());
    route.len() == raw.len()
        && route
            .iter()
            .zip(&raw)
            .all(|(r, p)| *r == *p || (r.starts_with('{') && r.ends_with('}') && !p.is_empty()))
}

/// The sessions table has exactly the index the adapter queries, on the
/// attributes it writes.
#[test]
fn the_sessions_table_index_is_the_one_the_adapter_queries() {
    let template = template();
    let table = &template["Resources"]["SessionsTable"]["Properties"];
    let indexes: Vec<&str> = table["GlobalSecondaryIndexes"]
        .as_array()
        .expect("SessionsTable has a GSI")
        .iter()
        .map(|i| i["IndexName"].as_str().unwrap())
        .collect();
    assert_eq!(indexes, [phone_auth::adapters::dynamo::USER_INDEX]);
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        "expires_at"
    );
    assert_eq!(table["KeySchema"][0]["AttributeName"], "sid");
}

/// publish-events: the users table's stream in batches, the first record
/// not handled reported back, a dead-letter queue after the retries, only
/// users' items; and it may only update users and put events on the
/// stack's bus.
#[test]
fn publish_events_reads_the_users_stream_and_may_only_count_and_publish() {
    let template = template();
    let functions = template_functions(&template);
    let (id, resource) = &functions["publish-events"];
    let table = &template["Resources"]["UsersTable"]["Properties"];
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES",
        "the function compares each change's before and after"
    );
    let events = resource["Properties"]["Events"]
        .as_object()
        .expect("events");
    assert_eq!(events.len(), 1, "{id}: one event source");
    let source = events.values().next().unwrap();
    assert_eq!(source["Type"], "DynamoDB");
    let properties = &source["Properties"];
    assert_eq!(
        properties["Stream"],
        json!({"Fn::GetAtt": "UsersTable.StreamArn"})
    );
    assert_eq!(
        properties["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(properties["StartingPosition"], "TRIM_HORIZON");
    assert_eq!(
        properties["DestinationConfig"]["OnFailure"]["Destination"],
        json!({"Fn::GetAtt": "PublishEventsDeadLetterQueue.Arn"})
    );
    assert!(
        properties["MaximumRetryAttempts"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let pattern: Value = serde_json::from_str(
        properties["FilterCriteria"]["Filters"][0]["Pattern"]
            .as_str()
            .expect("a filter pattern"),
    )
    .expect("the pattern is JSON");
    assert_eq!(
        pattern,
        json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "USER#"}]}}}}),
        "only users' items (adapters::dynamo::user_change reads no other)"
    );
    for (set_name, stack) in stacks(&template) {
        let granted = stack.permissions(id, resource);
        let expected: BTreeSet<(String, String)> = [
            ("dynamodb:UpdateItem", "UsersTable"),
            ("events:PutEvents", "EventBus"),
        ]
        .into_iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect();
        assert_eq!(granted, expected, "{set_name}: {id}'s own grants");
    }
}

/// The users table has exactly the indexes the adapter queries.
#[test]
fn the_users_table_indexes_are_the_ones_the_adapter_queries() {
    let template = template();
    let indexes: BTreeSet<String> =
        template["Resources"]["UsersTable"]["Properties"]["GlobalSecondaryIndexes"]
            .as_array()
            .expect("UsersTable has GSIs")
            .iter()
            .map(|i| i["IndexName"].as_str().unwrap().to_string())
            .collect();
    let queried: BTreeSet<String> = [phone_auth::adapters::dynamo::REFERRER_INDEX]
        .map(str::to_string)
        .into();
    assert_eq!(
        indexes, queried,
        "UsersTable GSIs vs the indexes dynamo.rs queries"
    );
}

#[test]
fn sample_events_match_their_functions_route_and_method() {
    let template = template();
    let functions = template_functions(&template);
    let events = root().join("events");
    let mut checked = 0;
    // Per function: whether it has a success sample, and a failure sample.
    let mut samples: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for dir in std::fs::read_dir(&events).expect("events/ exists") {
        let dir = dir.unwrap().path();
        let function = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            dir.is_dir(),
            "events/ holds one folder per function, not {function}"
        );
        let (id, resource) = functions
            .get(&function)
            .unwrap_or_else(|| panic!("events/{function}/: no such function in template.yaml"));
        if is_event_function(&function) {
            continue; // no route: its sample is a stream batch, read by publish_events.rs's tests
        }
        // The function's routes but its preflight's: (path, method).
        let routes: Vec<(String, String)> = template_routes(id, resource)
            .into_iter()
            .filter(|(_, method)| method != "OPTIONS")
            .collect();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = format!(
                "events/{function}/{}",
                file.file_name().unwrap().to_string_lossy()
            );
            let event: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let raw_path = event["rawPath"].as_str().unwrap_or_default();
            assert_eq!(
                event["requestContext"]["http"]["path"], raw_path,
                "{name}: http.path is the raw path"
            );
            // Under a named stage the raw path starts with it; routes do not.
            let routed_path = match event["requestContext"]["stage"].as_str() {
                Some("$default") | None => raw_path,
                Some(stage) => raw_path
                    .strip_prefix(&format!("/{stage}"))
                    .unwrap_or_else(|| panic!("{name}: the raw path starts with the stage")),
            };
            // At the function's own URL: every path reaches it, as route `$default`.
            let route_key = if event["routeKey"] == "$default" {
                assert!(
                    resource["Properties"]["FunctionUrlConfig"].is_object(),
                    "{name}: a function URL event, but {id} has no URL"
                );
                let domain = event["requestContext"]["domainName"].as_str().unwrap_or("");
                assert!(
                    domain.contains(".lambda-url.") && domain.ends_with(".on.aws"),
                    "{name}: a function URL's domainName, not {domain:?}"
                );
                "$default".to_string()
            } else {
                // As API Gateway sends it: the route key without the slash, the
                // path as the client wrote it (the seed's clients add the slash).
                let (path, method) = routes
                    .iter()
                    .find(|(path, _)| route_matches(path, routed_path))
                    .unwrap_or_else(|| {
                        panic!("{name}: rawPath {raw_path:?} is none of {routes:?}")
                    });
                format!("{method} {path}")
            };
            for key in [&event["routeKey"], &event["requestContext"]["routeKey"]] {
                assert_eq!(key, &route_key, "{name}: routeKey");
            }
            let status = file.file_name().unwrap().to_string_lossy();
            let found = samples.entry(function.clone()).or_default();
            if status.starts_with('2') {
                found.0 = true;
            } else {
                found.1 = true;
            }
            if status.starts_with('2') {
                assert_eq!(
                    event["requestContext"]["http"]["method"],
                    function_of(&function).method.as_str(),
                    "{name}: a success event uses the endpoint's method"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} events found");
    // Every function behind a route has samples, for success and for failure.
    for Function { binary, .. } in FUNCTIONS {
        let (success, failure) = samples.get(binary).copied().unwrap_or_default();
        assert!(success, "events/{binary}/ has no success event");
        assert!(failure, "events/{binary}/ has no failure event");
    }
}

/// API Gateway's JWT authorizer, the functions and the jwks function agree:
/// the authorizer trusts exactly the issuer and audience every function that
/// signs or verifies tokens is given; that issuer is the jwks function's own
/// URL, which answers the discovery document naming that issuer and, at its
/// `jwks_uri`, keys that verify a token the sign-in function signs, checked
/// the way the authorizer checks it. For every parameter set.
#[tokio::test]
async fn the_issuer_the_authorizer_trusts_is_the_one_the_functions_sign_and_serve() {
    let template = template();
    let functions = template_functions(&template);
    let keys = phone_auth::token::generate_key_pair();
    for (set_name, stack) in stacks(&template) {
        let found = authorizers(&stack);
        assert_eq!(found.len(), 1, "{set_name}: one JWT authorizer: {found:?}");
        let (issuer, audience) = found.into_values().next().unwrap();

        // The issuer: https:// and the host of the jwks function's URL, no final slash.
        let (id, _) = &functions["jwks"];
        let url = stack
            .reference(&format!("{id}Url.FunctionUrl"))
            .expect("the jwks function has a URL");
        let host = url
            .strip_prefix("https://")
            .and_then(|rest| rest.strip_suffix('/'))
            .expect("a function URL is https://<host>/");
        assert_eq!(issuer, format!("https://{host}"), "{set_name}");

        // Every function that signs or verifies tokens is given that issuer
        // and the audience; the jwks function none (it takes the host).
        let mut environments = BTreeMap::new();
        for Function { binary, .. } in FUNCTIONS {
            let (id, resource) = &functions[binary];
            let env = stack.environment(resource);
            let uses_tokens = ["TOKEN_PRIVATE_KEY", "TOKEN_AUDIENCE"]
                .iter()
                .any(|v| env.contains_key(*v));
            let given = env.get("TOKEN_ISSUER").filter(|v| !v.is_empty());
            if binary == "jwks" {
                assert_eq!(given, None, "{set_name}: {id}");
            } else if uses_tokens {
                assert_eq!(given, Some(&issuer), "{set_name}: {id}: TOKEN_ISSUER");
                assert_eq!(
                    env.get("TOKEN_AUDIENCE").map(|a| vec![a.clone()]),
                    Some(audience.clone()),
                    "{set_name}: {id}: TOKEN_AUDIENCE is the authorizer's one audience"
                );
            }
            let (values, errors) = process_environment(&env, &keys);
            assert!(errors.is_empty(), "{set_name}: {id}: {errors:?}");
            environments.insert(binary, values);
        }

        // A token as sign-in mints it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let signer = config_of(environments["send-code"].clone())
            .token_signer()
            .expect("send-code's signer");
        let token = signer.issue_access(
            &phone_auth::user::UserId::generate(),
            &phone_auth::session::SessionId::generate(),
            now,
        );

        // The authorizer's steps: the discovery document at the issuer...
        let jwks = phone_auth::endpoints::build::<Jwks>(&config_of(environments["jwks"].clone()))
            .expect("jwks starts");
        let discovery = "/.well-known/openid-configuration";
        let response = jwks
            .serve(lambda_request("GET", host, discovery, "$default"))
            .await;
        assert_eq!(response.status(), 200, "{set_name}: {discovery}");
        let document: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(document["issuer"], issuer.as_str(), "{set_name}");
        let jwks_uri = document["jwks_uri"].as_str().expect("jwks_uri");
        assert_eq!(jwks_uri, format!("{issuer}/.well-known/jwks.json"));
        // ...the keys at its jwks_uri...
        let keys_path = jwks_uri.strip_prefix(&issuer).unwrap();
        let response = jwks
            .serve(lambda_request("GET", host, keys_path, "$default"))
            .await;
        assert_eq!(response.status(), 200, "{set_name}: {keys_path}");
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(response.body().as_ref()).expect("a JWK Set");
        // ...the key the token's kid names, the issuer and the audience.
        let kid = jsonwebtoken::decode_header(&token)
            .unwrap()
            .kid
            .expect("a kid");
        let jwk = set.find(&kid).expect("the signing key is served");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&audience);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        jsonwebtoken::decode::<Value>(&token, &key, &validation)
            .unwrap_or_else(|e| panic!("{set_name}: the authorizer would refuse it: {e}"));

        // The functions behind it accept it too.
        for binary in BEARER_FUNCTIONS {
            let verifier = config_of(environments[binary].clone())
                .token_verifier()
                .expect("a verifier");
            let claims = verifier
                .verify(&token, phone_auth::token::TokenKind::Access)
                .unwrap_or_else(|e| panic!("{set_name}: {binary} refuses it: {e}"))
                .claims;
            assert_eq!(
                (claims.iss, vec![claims.aud]),
                (issuer.clone(), audience.clone())
            );
        }
    }
}

/// The authorizer stands in front of exactly the routes whose function
/// answers a request without a token 401 `missing_token` (asked here,
/// built from the template's variables); every such route has a public
/// `OPTIONS` route beside it for preflights, which its function answers.
#[test]
fn the_authorizer_guards_exactly_the_routes_whose_function_wants_a_token() {
    let template = template();
    let functions = template_functions(&template);
    let keys = phone_auth::token::generate_key_pair();
    let stack = Stack::new(&template, &[("CorsOrigins", "https://app.example.com")]);
    let names: BTreeSet<String> = authorizers(&stack).into_keys().collect();
    let mut guarded = BTreeSet::new();
    // Every public OPTIONS route, of whichever function: seed-004's profile
    // has one function per method and one preflight route for the path.
    let preflight_paths: BTreeSet<String> = functions
        .values()
        .flat_map(|(id, resource)| template_routes(id, resource))
        .filter(|(_, method)| method == "OPTIONS")
        .map(|(path, _)| path)
        .collect();
    for Function { binary, probe, .. } in FUNCTIONS {
        let (id, resource) = &functions[binary];
        let (values, _) = process_environment(&stack.environment(resource), &keys);
        let config = config_of(values);
        let events = resource["Properties"]["Events"].as_object().unwrap();
        // (path, method) of each route that is not a preflight: ANY, or the
        // function's own method.
        let api_routes: BTreeMap<(String, String), Option<String>> = events
            .values()
            .filter(|e| e["Properties"]["Method"] != "OPTIONS")
            .map(|e| (route_of(id, e), route_authorizer(e)))
            .collect();
        for ((path, method), authorizer) in &api_routes {
            if let Some(name) = authorizer {
                assert!(
                    names.contains(name),
                    "{id}: {path} names no authorizer of the API"
                );
            }
            let raw_path = path.replace("{id}", "q3Yb0dJv2o1kXrWm9Zc4Fg");
            let answer = probe(&config, None, &raw_path, &format!("{method} {path}"));
            let wants_token = answer == (401, Some("missing_token".to_string()));
            assert_eq!(
                authorizer.is_some(),
                wants_token,
                "{id}: {method} {path} without a token is answered {answer:?}; \
                 the route must be behind the authorizer exactly when that is 401 missing_token"
            );
            if wants_token {
                guarded.insert(binary);
                assert!(
                    preflight_paths.contains(path),
                    "{id}: {path} is behind the authorizer but has no public OPTIONS route for preflights"
                );
            }
        }
        for event in events
            .values()
            .filter(|e| e["Properties"]["Method"] == "OPTIONS")
        {
            let (path, _) = route_of(id, event);
            assert_eq!(
                route_authorizer(event),
                None,
                "{id}: a preflight carries no token"
            );
            assert!(
                matches!(
                    api_routes.get(&(path.clone(), "ANY".to_string())),
                    Some(Some(_))
                ),
                "{id}: OPTIONS {path} only beside an ANY route behind the authorizer"
            );
            let answer = probe(&config, Some("OPTIONS"), &path, &format!("OPTIONS {path}"));
            assert_eq!(answer.0, 204, "{id}: the function answers the preflight");
        }
    }
    assert_eq!(
        guarded,
        BTreeSet::from(BEARER_FUNCTIONS),
        "the bearer routes"
    );
}

/// The functions' own metrics (shared/src/observe.rs, EMF) are the ones the
/// template's alarms and dashboard read in their namespace: an alarm on a
/// metric the code never emits would never fire, and a metric the dashboard
/// does not show is one nobody looks at.
#[test]
fn alarms_and_dashboard_read_the_metrics_the_code_emits() {
    use phone_auth::observe::Metric;
    let template = template();
    let namespace = json!({ "Fn::Sub": "PhoneAuth/${AWS::StackName}" });
    assert_eq!(
        template["Globals"]["Function"]["Environment"]["Variables"]["METRICS_NAMESPACE"], namespace,
        "the functions publish in the namespace the alarms read"
    );
    let emitted: BTreeSet<&str> = Metric::ALL.iter().map(|m| m.name()).collect();

    let mut alarmed = BTreeSet::new();
    for (id, alarm) in resources_of_type(&template, "AWS::CloudWatch::Alarm") {
        let properties = &alarm["Properties"];
        let stats = properties["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| &m["MetricStat"]["Metric"]);
        for metric in std::iter::once(properties).chain(stats) {
            if metric["Namespace"] != namespace {
                continue;
            }
            let name = metric["MetricName"].as_str().expect("a metric name");
            assert!(
                emitted.contains(name),
                "{id} reads {name}, which no function emits"
            );
            alarmed.insert(name);
        }
    }
    // The issue's alarms: a wrong-code spike, lockouts, any refresh reuse,
    // SMS per hour and the daily budget (both CodesSent), SMS failures.
    for watched in [
        "WrongCodes",
        "Lockouts",
        "RefreshReuse",
        "CodesSent",
        "SmsFailures",
    ] {
        assert!(alarmed.contains(watched), "no alarm reads {watched}");
    }

    let body =
        template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
            .as_str()
            .expect("the dashboard body is a Fn::Sub string");
    let mut substituted = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        substituted.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let name = &rest[start + 2..end];
        substituted.push_str(if name == "Namespace" {
            "NAMESPACE"
        } else {
            "x"
        });
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let dashboard: Value = serde_json::from_str(&substituted).expect("the dashboard is JSON");
    let mut shown = BTreeSet::new();
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        for metric in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let metric = metric.as_array().expect("a metric is an array");
            if metric[0] == "NAMESPACE" {
                shown.insert(metric[1].as_str().expect("a name").to_string());
            } else if let Some(expression) = metric[0]["expression"].as_str()
                && expression.contains("NAMESPACE")
            {
                let name = expression
                    .split("MetricName=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .expect("a SEARCH by MetricName");
                shown.insert(name.to_string());
            }
        }
    }
    let emitted: BTreeSet<String> = emitted.into_iter().map(str::to_string).collect();
    assert_eq!(
        shown, emitted,
        "the dashboard shows exactly the emitted metrics"
    );
}
