//! The API's OpenAPI 3.1 document, built from the code so that it cannot
//! drift from it:
//!
//! * request and response bodies are the endpoints' own types' JSON Schemas
//!   (`#[derive(ToSchema)]` beside their `Serialize`/`Deserialize`), so a
//!   field renamed in code is renamed in the document;
//! * each operation's method is its endpoint's `Endpoint::METHOD`, and a
//!   function that calls AWS documents the 503 it can answer;
//! * errors are [`ApiError`] values each operation can return, answered
//!   through error.rs's one mapping: status, `code`, message, body and
//!   headers in the document are what the service sends;
//! * the domain events' schemas are `docs/events/*.v1.json` themselves.
//!
//! The paths are the routes' (with the final slash clients of the seeds
//! use; every route answers without it too): shared/tests/openapi.rs checks
//! them against template.yaml's in both directions and the committed
//! `openapi.json` against [`document`].

use std::collections::BTreeMap;

use lambda_http::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::client_profile::ClientProfileBody;
use super::get_code::{GetCodeRequest, GetCodeResponse};
use super::list_referrals::ReferralPage;
use super::list_sessions::SessionList;
use super::login::LoggedIn;
use super::logout::LogoutRequest;
use super::refresh::{RefreshRequest, TokenPair};
use super::register::Registered;
use super::retrieve::Profile;
use super::send_code::SendCodeRequest;
use super::set_referrer::{Message, SetReferrerRequest};
use super::two_step::StepRequest;
use super::update_client_profile::UpdateRequest;
use super::{
    ClientProfile, DeleteAccount, Docs, Endpoint, GetCode, Jwks, ListReferrals, ListSessions,
    Login, Logout, LogoutAll, Refresh, Register, Retrieve, RevokeSession, SendCode, SetReferrer,
    UpdateClientProfile, Web,
};
use crate::cursor::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::{ApiError, ErrorBody};
use crate::phone::{Phone, PhoneError};
use crate::token::{TokenError, TokenKind};
use crate::user::UserId;

/// A schema written as JSON, for the types whose schema is not derived (a
/// newtype's format and example).
pub(crate) fn schema(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).expect("a valid JSON Schema object")
}

// The domain types the answers carry, as the API documents them; here, so
// that the domain modules know nothing of the document.

/// A user's id.
impl utoipa::PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "integer",
            "minimum": 1,
            "maximum": UserId::MAX,
            "description": "A user's id: random, exact as a JSON number in every client (at most 2^53 - 1), the tokens' `sub`.",
            "examples": [4_503_599_627_370_496u64],
        }))
    }
}
impl ToSchema for UserId {}

/// Phones as the API answers them: E.164 (requests take any common spelling).
impl utoipa::PartialSchema for Phone {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "pattern": "^\\+[1-9][0-9]{6,14}$",
            "description": "A phone number in E.164.",
            "examples": ["+79001234567"],
        }))
    }
}
impl ToSchema for Phone {}

/// One documented operation: which function serves it, at which path.
pub struct Operation {
    /// `Endpoint::NAME`: the function (and binary) serving it.
    pub function: &'static str,
    pub method: Method,
    pub path: &'static str,
    /// Behind the bearer scheme (API Gateway's JWT authorizer, deployed).
    pub bearer: bool,
    object: Value,
}

/// The domain events' schemas (docs/events/), as components: what other
/// services receive on EventBridge (docs/events.md), not HTTP answers.
const EVENT_SCHEMAS: [(&str, &str); 3] = [
    (
        "UserCreatedV1",
        include_str!("../../../docs/events/user.created.v1.json"),
    ),
    (
        "ReferralCreatedV1",
        include_str!("../../../docs/events/referral.created.v1.json"),
    ),
    (
        "UserDeletedV1",
        include_str!("../../../docs/events/user.deleted.v1.json"),
    ),
];

/// The document's reusable schemas, gathered as operations name types.
#[derive(Default)]
struct Components {
    schemas: BTreeMap<String, Value>,
}

impl Components {
    /// A `$ref` to `T`'s schema, which is added (with the types it names).
    fn of<T: ToSchema>(&mut self) -> Value {
        let mut named = Vec::new();
        T::schemas(&mut named);
        named.push((T::name().into_owned(), T::schema()));
        for (name, schema) in named {
            let schema = serde_json::to_value(schema).expect("schemas serialize");
            self.schemas.insert(name, schema);
        }
        json!({ "$ref": format!("#/components/schemas/{}", T::name()) })
    }
}

const TAG_SEED_000: &str = "sign-in and profile (/users)";
const TAG_SEED_004: &str = "Connect Hub (seed-004, /api)";
const TAG_KEYS: &str = "keys";
const TAG_DOCS: &str = "documentation";
const TAG_WEB: &str = "web page";

const PHONE: &str = "+79001234567";
/// Placeholders in examples: real tokens are long and would expire.
const ACCESS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI0NTAzNTk5NjI3MzcwNDk2In0.c2lnbmF0dXJl";
const REFRESH: &str = "rt1.8f0c6f2a9b1d4e7f.3.mac";
const USER_ID: u64 = 4_503_599_627_370_496;

/// What an operation is made of, before it becomes the operation object.
struct Op {
    function: &'static str,
    method: Method,
    path: &'static str,
    object: Map<String, Value>,
    bearer: bool,
    has_body: bool,
    uses_aws: bool,
    errors: Vec<ApiError>,
    responses: BTreeMap<u16, Value>,
}

fn op<E: Endpoint>(path: &'static str, tag: &str, summary: &str, description: &str) -> Op {
    let mut object = Map::new();
    object.insert("tags".into(), json!([tag]));
    object.insert("summary".into(), summary.into());
    object.insert("description".into(), description.into());
    object.insert(
        "operationId".into(),
        format!(
            "{}_{}",
            E::NAME.replace('-', "_"),
            E::METHOD.as_str().to_lowercase()
        )
        .into(),
    );
    Op {
        function: E::NAME,
        method: E::METHOD,
        path,
        object,
        bearer: false,
        has_body: false,
        uses_aws: E::USES_AWS,
        errors: Vec::new(),
        responses: BTreeMap::new(),
    }
}

impl Op {
    /// Wants an access token: 401s are documented, and the bearer scheme.
    fn bearer(mut self) -> Self {
        self.bearer = true;
        self
    }

    /// A JSON body of `schema`; its read errors (400, 413) are documented.
    fn body(mut self, schema: Value, example: Value) -> Self {
        self.has_body = true;
        self.object.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": {"application/json": {"schema": schema, "example": example}},
            }),
        );
        self
    }

    fn parameters(mut self, parameters: Value) -> Self {
        self.object.insert("parameters".into(), parameters);
        self
    }

    /// A JSON answer.
    fn json(
        mut self,
        status: StatusCode,
        description: &str,
        schema: Value,
        example: Value,
    ) -> Self {
        self.responses.insert(
            status.as_u16(),
            json!({
                "description": description,
                "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": schema, "example": example}},
            }),
        );
        self
    }

    /// An answer without a body.
    fn empty(mut self, status: StatusCode, description: &str) -> Self {
        self.responses
            .insert(status.as_u16(), json!({ "description": description }));
        self
    }

    fn response(mut self, status: StatusCode, response: Value) -> Self {
        self.responses.insert(status.as_u16(), response);
        self
    }

    /// Errors of this operation beyond those every operation of its kind has.
    fn errors(mut self, errors: impl IntoIterator<Item = ApiError>) -> Self {
        self.errors.extend(errors);
        self
    }

    fn build(mut self, components: &mut Components) -> Operation {
        let mut errors = Vec::new();
        if self.bearer {
            errors.extend([
                ApiError::MissingToken,
                ApiError::Token(TokenError::Invalid),
                ApiError::Token(TokenError::Expired),
                ApiError::Token(TokenError::WrongKind(TokenKind::Access)),
            ]);
            self.object
                .insert("security".into(), json!([{ "bearerAuth": [] }]));
        }
        if self.has_body {
            errors.extend([
                ApiError::InvalidJson("expected value at line 1 column 1".into()),
                ApiError::InvalidRequest("missing field `phone`".into()),
                ApiError::PayloadTooLarge {
                    limit: crate::http::MAX_BODY_BYTES,
                },
            ]);
        }
        errors.append(&mut self.errors);
        if self.uses_aws {
            errors.push(ApiError::Unavailable);
        }
        let error_ref = components.of::<ErrorBody>();
        for (status, response) in error_responses(errors, &error_ref, self.bearer) {
            let previous = self.responses.insert(status, response);
            assert!(
                previous.is_none(),
                "{} {}: {status} is both a success and an error",
                self.method,
                self.path
            );
        }
        let responses: Map<String, Value> = self
            .responses
            .into_iter()
            .map(|(status, response)| (status.to_string(), response))
            .collect();
        self.object.insert("responses".into(), responses.into());
        Operation {
            function: self.function,
            method: self.method,
            path: self.path,
            bearer: self.bearer,
            object: self.object.into(),
        }
    }
}

/// The error responses, by status: each lists the `code`s it may carry (an
/// enumeration clients can switch on), and an example of each, as the
/// service answers it.
fn error_responses(errors: Vec<ApiError>, error_ref: &Value, bearer: bool) -> BTreeMap<u16, Value> {
    struct Status {
        codes: Vec<&'static str>,
        examples: Map<String, Value>,
        headers: BTreeMap<String, &'static str>,
    }
    let mut by_status: BTreeMap<u16, Status> = BTreeMap::new();
    for error in errors {
        let (status, code) = error.status_and_code();
        let response = error.into_response();
        let body: Value =
            serde_json::from_slice(response.body().as_ref()).expect("errors are JSON");
        let entry = by_status.entry(status.as_u16()).or_insert(Status {
            codes: Vec::new(),
            examples: Map::new(),
            headers: BTreeMap::new(),
        });
        if !entry.codes.contains(&code) {
            entry.codes.push(code);
        }
        entry
            .examples
            .entry(code)
            .or_insert_with(|| json!({ "summary": body["message"], "value": body }));
        for name in response.headers().keys() {
            let about = match name.as_str() {
                "retry-after" => "Seconds until the request may succeed (throttling and budgets).",
                "www-authenticate" => "`Bearer`: an access token is wanted.",
                "allow" => "The methods the path serves.",
                _ => continue,
            };
            entry.headers.insert(canonical_header(name.as_str()), about);
        }
    }
    by_status
        .into_iter()
        .map(|(status, entry)| {
            let mut schema = json!({
                "allOf": [
                    error_ref,
                    {"properties": {"code": {"enum": entry.codes}}},
                ],
            });
            let mut description = format!(
                "{}: `code` is one of {}.",
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error"),
                entry
                    .codes
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if bearer && status == 401 {
                // Deployed, API Gateway's JWT authorizer answers first, in its own words.
                schema = json!({ "anyOf": [schema, {"$ref": "#/components/schemas/GatewayUnauthorized"}] });
                description.push_str(
                    " Deployed, API Gateway's JWT authorizer refuses a missing or invalid token \
                     before the function runs, answering `{\"message\":\"Unauthorized\"}`.",
                );
            }
            let headers: Map<String, Value> = entry
                .headers
                .into_iter()
                .map(|(name, about)| {
                    (name, json!({"description": about, "schema": {"type": "string"}}))
                })
                .collect();
            let mut response = json!({
                "description": description,
                "content": {"application/json": {"schema": schema, "examples": entry.examples}},
            });
            if !headers.is_empty() {
                response["headers"] = headers.into();
            }
            (status, response)
        })
        .collect()
}

fn canonical_header(name: &str) -> String {
    match name {
        "www-authenticate" => "WWW-Authenticate".into(),
        other => other
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or(String::new(), |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

fn phone_errors() -> [ApiError; 3] {
    [
        ApiError::Phone(PhoneError::Invalid),
        ApiError::Phone(PhoneError::RegionNotAllowed),
        ApiError::Phone(PhoneError::TypeNotAllowed),
    ]
}

/// What sending a code may refuse: get_code and step 1 of seed-004's routes.
fn send_errors() -> [ApiError; 7] {
    [
        ApiError::UnsupportedLang,
        ApiError::ResendTooSoon { retry_after: 42 },
        ApiError::TooManyCodes { retry_after: 1800 },
        ApiError::PhoneLocked { retry_after: 3600 },
        ApiError::TooManyFromIp { retry_after: 600 },
        ApiError::RegionBudgetExhausted { retry_after: 7200 },
        ApiError::SmsBudgetExhausted { retry_after: 7200 },
    ]
}

/// What checking a code may refuse: send_code and step 2 of seed-004's routes.
fn check_errors() -> [ApiError; 6] {
    [
        ApiError::MalformedCode { length: 4 },
        ApiError::CodeInvalid,
        ApiError::CodeExpired,
        ApiError::TooManyAttempts,
        ApiError::PhoneLocked { retry_after: 3600 },
        ApiError::TooManyChecksFromIp { retry_after: 600 },
    ]
}

/// What naming a referrer may refuse: set_referrer and seed-004's PATCH.
fn referrer_errors() -> [ApiError; 7] {
    [
        ApiError::MalformedInviteCode,
        ApiError::OwnInviteCode,
        ApiError::UserNotFound,
        ApiError::InviteCodeNotFound,
        ApiError::AlreadyReferred("7hjCdO".into()),
        ApiError::ReferralCycle,
        ApiError::ReferralChainTooDeep { max: 1000 },
    ]
}

fn operations_with(c: &mut Components) -> Vec<Operation> {
    let code_sent = json!({ "phone": PHONE });
    let tokens = json!({ "access": ACCESS, "refresh": REFRESH });
    let profile_example = json!({
        "id": USER_ID, "phone": PHONE, "invitation_code": "Ab12Cd",
        "someone_invitation_code": "7hjCdO",
        "connections_invited_clients": ["+79007654321"], "referrals_count": 1,
    });
    let step_request = c.of::<StepRequest>();
    let get_code_response = c.of::<GetCodeResponse>();
    let ops = vec![
        op::<GetCode>(
            "/users/auth/get_code/",
            TAG_SEED_000,
            "Send a sign-in code by SMS",
            "Sends a one-time code to the phone, under the phone's, the network's, the country's and \
             the service's limits. In dev mode (`make dev` only, never deployed) the answer also \
             carries the code and the SMS.",
        )
        .body(c.of::<GetCodeRequest>(), json!({ "phone": PHONE, "lang": "en" }))
        .json(StatusCode::OK, "The code was sent.", get_code_response.clone(), code_sent.clone())
        .errors(phone_errors())
        .errors(send_errors()),
        op::<SendCode>(
            "/users/auth/send_code/",
            TAG_SEED_000,
            "Sign in with the code",
            "Checks the code; the first sign-in creates the user. Starts a session and answers its \
             tokens.",
        )
        .body(c.of::<SendCodeRequest>(), json!({ "phone": PHONE, "password": "1234" }))
        .json(StatusCode::OK, "Signed in: a new session's tokens.", c.of::<TokenPair>(), tokens.clone())
        .errors(phone_errors())
        .errors(check_errors()),
        op::<Refresh>(
            "/users/auth/refresh/",
            TAG_SEED_000,
            "Rotate the refresh token",
            "A new access token and the session's next refresh token; the one sent stops working.",
        )
        .body(c.of::<RefreshRequest>(), json!({ "refresh": REFRESH }))
        .json(StatusCode::OK, "The session's new tokens.", c.of::<TokenPair>(), tokens)
        .errors([
            ApiError::RefreshTokenInvalid,
            ApiError::SessionRevoked,
            ApiError::SessionExpired,
            ApiError::RefreshTokenReused,
        ]),
        op::<Logout>(
            "/users/auth/logout/",
            TAG_SEED_000,
            "Sign out of one session",
            "Any refresh token of the session ends it; 204 also when it already ended.",
        )
        .body(c.of::<LogoutRequest>(), json!({ "refresh": REFRESH }))
        .empty(StatusCode::NO_CONTENT, "The session is over.")
        .errors([ApiError::RefreshTokenInvalid]),
        op::<LogoutAll>(
            "/users/auth/logout_all/",
            TAG_SEED_000,
            "Sign out of every session",
            "Every session of the caller is revoked.",
        )
        .bearer()
        .empty(StatusCode::NO_CONTENT, "Every session is over."),
        op::<ListSessions>(
            "/users/sessions/",
            TAG_SEED_000,
            "List the caller's sessions",
            "Live sessions, newest first; `current` is the one the access token belongs to.",
        )
        .bearer()
        .json(
            StatusCode::OK,
            "The caller's live sessions.",
            c.of::<SessionList>(),
            json!({ "sessions": [{
                "id": "b6f1c0d2a3e4f5a6b7c8d9e0f1a2b3c4", "created_at": 1_795_309_200u64,
                "last_used_at": 1_795_312_800u64, "user_agent": "okhttp/4.12.0",
                "ip": "203.0.113.10", "current": true,
            }]}),
        ),
        op::<RevokeSession>(
            "/users/sessions/{id}/",
            TAG_SEED_000,
            "Sign out of one of the caller's sessions",
            "Anyone else's, an unknown or a malformed id is the same 404.",
        )
        .bearer()
        .parameters(json!([{
            "name": "id", "in": "path", "required": true,
            "description": "A session's `id` from `GET /users/sessions/`.",
            "schema": {"type": "string"},
        }]))
        .empty(StatusCode::NO_CONTENT, "The session is over (also when it already was).")
        .errors([ApiError::SessionNotFound]),
        op::<ListReferrals>(
            "/users/referrals/",
            TAG_SEED_000,
            "Page through the caller's referrals",
            "Newest first. `next_cursor` is null exactly when no referral follows; passed back as \
             `cursor` (by the same caller) it gives the next page.",
        )
        .bearer()
        .parameters(json!([
            {
                "name": "limit", "in": "query", "required": false,
                "description": "Referrals per page.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
            },
            {
                "name": "cursor", "in": "query", "required": false,
                "description": "The previous page's `next_cursor`.",
                "schema": {"type": "string"},
            },
        ]))
        .json(
            StatusCode::OK,
            "One page of referrals.",
            c.of::<ReferralPage>(),
            json!({
                "referrals": [{ "phone": "+79007654321", "joined_at": 1_795_309_200u64 }],
                "next_cursor": null,
            }),
        )
        .errors([ApiError::InvalidLimit, ApiError::InvalidCursor]),
        op::<DeleteAccount>(
            "/users/me/",
            TAG_SEED_000,
            "Delete the caller's account",
            "The account, its sessions and its referral links are erased (README \"Deleting an \
             account\"); 204 again for a retry.",
        )
        .bearer()
        .empty(StatusCode::NO_CONTENT, "The account is deleted."),
        op::<Retrieve>(
            "/users/retrieve/",
            TAG_SEED_000,
            "The caller's profile",
            "`referrals` are the first `PROFILE_REFERRALS_MAX`, oldest first; `referrals_count` \
             counts them all, from the table's stream (seconds behind).",
        )
        .bearer()
        .json(
            StatusCode::OK,
            "The profile.",
            c.of::<Profile>(),
            json!({
                "id": USER_ID, "phone": PHONE, "invite_code": "Ab12Cd",
                "invited_by_phone": "+79007654321", "invite_code_referer": "7hjCdO",
                "referrals": [], "referrals_count": 0,
            }),
        )
        .errors([ApiError::UserNotFound]),
        op::<SetReferrer>(
            "/users/set_referrer/",
            TAG_SEED_000,
            "Enter another user's invite code",
            "Once per user, never closing a circle of referrals.",
        )
        .bearer()
        .body(c.of::<SetReferrerRequest>(), json!({ "invite_code": "7hjCdO" }))
        .json(
            StatusCode::OK,
            "The referrer is set.",
            c.of::<Message>(),
            json!({ "message": "You have become referral of user with invite code 7hjCdO" }),
        )
        .errors(referrer_errors()),
        op::<Register>(
            "/api/register/",
            TAG_SEED_004,
            "Register: send a code, then create the account",
            "Without `sms_code`: sends a code (get_code's answer and limits). With it: creates the \
             account and answers 201. A phone that has an account is refused unless \
             `PREVENT_USER_EXISTENCE_ERRORS`.",
        )
        .body(step_request.clone(), json!({ "phone": PHONE, "sms_code": "1234" }))
        .json(StatusCode::OK, "Step 1: the code was sent.", get_code_response.clone(), code_sent.clone())
        .json(
            StatusCode::CREATED,
            "Step 2: the account exists; its tokens.",
            c.of::<Registered>(),
            json!({
                "id": USER_ID, "user_id": USER_ID, "phone": PHONE, "invitation_code": "Ab12Cd",
                "access_token": ACCESS, "refresh_token": REFRESH,
            }),
        )
        .errors(phone_errors())
        .errors(send_errors())
        .errors(check_errors())
        .errors([ApiError::PhoneAlreadyRegistered]),
        op::<Login>(
            "/api/login/",
            TAG_SEED_004,
            "Log in: send a code, then sign in",
            "Without `sms_code`: sends a code (get_code's answer and limits). With it: signs in. A \
             phone without an account is refused unless `PREVENT_USER_EXISTENCE_ERRORS`.",
        )
        .body(step_request, json!({ "phone": PHONE }))
        .json(
            StatusCode::OK,
            "Step 1: the code was sent (`{phone}`); step 2: signed in.",
            json!({ "anyOf": [get_code_response, c.of::<LoggedIn>()] }),
            json!({ "id": USER_ID, "phone": PHONE, "access_token": ACCESS, "refresh_token": REFRESH }),
        )
        .errors(phone_errors())
        .errors(send_errors())
        .errors(check_errors())
        .errors([ApiError::NoAccount]),
        op::<ClientProfile>(
            "/api/clients/profile/",
            TAG_SEED_004,
            "The caller's profile, in seed-004's words",
            "The same user as `GET /users/retrieve/`.",
        )
        .bearer()
        .json(StatusCode::OK, "The profile.", c.of::<ClientProfileBody>(), profile_example.clone())
        .errors([ApiError::UserNotFound]),
        op::<UpdateClientProfile>(
            "/api/clients/profile/",
            TAG_SEED_004,
            "Enter another user's invite code, in seed-004's words",
            "`POST /users/set_referrer/`'s rules and codes; answers the whole profile.",
        )
        .bearer()
        .body(c.of::<UpdateRequest>(), json!({ "invitation_code": "7hjCdO" }))
        .json(StatusCode::OK, "The profile, referrer set.", c.of::<ClientProfileBody>(), profile_example)
        .errors(referrer_errors()),
        op::<Jwks>(
            "/.well-known/jwks.json",
            TAG_KEYS,
            "The keys that verify access tokens",
            "A JWK Set (RFC 7517). Public and cacheable. The discovery document \
             (`/.well-known/openid-configuration`) is served at the tokens' issuer, the jwks \
             function's own URL, not on the API.",
        )
        .json(
            StatusCode::OK,
            "The JWK Set.",
            json!({
                "type": "object",
                "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
            }),
            json!({ "keys": [{ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "2026-11", "n": "…", "e": "AQAB" }] }),
        ),
    ];
    let mut operations: Vec<Operation> = ops.into_iter().map(|op| op.build(c)).collect();
    operations.extend(docs_operations(c));
    operations.extend(web_operations(c));
    operations
}

/// The docs function's own pages (endpoints/docs.rs).
fn docs_operations(c: &mut Components) -> Vec<Operation> {
    let html = |description: &str| {
        json!({
            "description": description,
            "headers": {"Content-Security-Policy": {"schema": {"type": "string"}}},
            "content": {"text/html": {"schema": {"type": "string"}}},
        })
    };
    let redirect = |to: &str| {
        json!({
            "description": format!("Moved to {to}."),
            "headers": {"Location": {"required": true, "schema": {"type": "string"}}},
        })
    };
    vec![
        op::<Docs>(
            "/openapi.json",
            TAG_DOCS,
            "This document",
            "OpenAPI 3.1, generated from the code.",
        )
        .json(
            StatusCode::OK,
            "The document.",
            json!({"type": "object"}),
            json!({"openapi": "3.1.0"}),
        )
        .build(c),
        op::<Docs>(
            "/docs/",
            TAG_DOCS,
            "Swagger UI",
            "Every file it loads is served here; nothing from elsewhere.",
        )
        .response(StatusCode::OK, html("Swagger UI on this document."))
        .build(c),
        asset_files(
            op::<Docs>(
                "/docs/{asset}",
                TAG_DOCS,
                "The docs pages' files",
                "Scripts, stylesheets and licences of Swagger UI and ReDoc.",
            ),
            &super::docs::ASSET_NAMES,
            &["text/javascript", "text/css", "text/plain"],
        )
        .build(c),
        op::<Docs>(
            "/redoc/",
            TAG_DOCS,
            "ReDoc",
            "Every file it loads is served here; nothing from elsewhere.",
        )
        .response(StatusCode::OK, html("ReDoc on this document."))
        .build(c),
        op::<Docs>(
            "/swagger/",
            TAG_DOCS,
            "Swagger UI's old address",
            "seed-000 served Swagger UI at `/swagger/`.",
        )
        .response(StatusCode::MOVED_PERMANENTLY, redirect("`../docs/`"))
        .build(c),
    ]
}

/// A static files route (`{asset}` one of `names`): each file in one of
/// `content_types`, 404 for any other name.
fn asset_files(operation: Op, names: &[&str], content_types: &[&str]) -> Op {
    let content: Map<String, Value> = content_types
        .iter()
        .map(|t| (t.to_string(), json!({"schema": {"type": "string"}})))
        .collect();
    operation
        .parameters(json!([{
            "name": "asset", "in": "path", "required": true,
            "schema": {"type": "string", "enum": names},
        }]))
        .response(
            StatusCode::OK,
            json!({"description": "The file.", "content": content}),
        )
        .errors([ApiError::NotFound])
}

/// The web page (README "The web page"): HTML, its files, and a bodiless
/// 304 while a file is unchanged (ETag).
fn web_operations(c: &mut Components) -> Vec<Operation> {
    let page = |path: &'static str, summary: &str| {
        op::<Web>(
            path,
            TAG_WEB,
            summary,
            "Sign in, profile, invite code, sessions; Russian and English.",
        )
        .response(
            StatusCode::OK,
            json!({
                "description": "The page.",
                "headers": {"Content-Security-Policy": {"schema": {"type": "string"}}},
                "content": {"text/html": {"schema": {"type": "string"}}},
            }),
        )
        .response(
            StatusCode::NOT_MODIFIED,
            json!({"description": "Unchanged (If-None-Match)."}),
        )
    };
    vec![
        page("/", "The web page").build(c),
        page("/app/", "The web page, at its second address").build(c),
        asset_files(
            op::<Web>(
                "/app/{asset}",
                TAG_WEB,
                "The web page's files",
                "Its script, styles and icon.",
            ),
            &super::web::ASSET_NAMES,
            &["text/javascript", "text/css", "image/svg+xml"],
        )
        .response(
            StatusCode::NOT_MODIFIED,
            json!({"description": "Unchanged (If-None-Match)."}),
        )
        .build(c),
    ]
}

/// Every documented operation.
pub fn operations() -> Vec<Operation> {
    operations_with(&mut Components::default())
}

/// The whole OpenAPI document.
pub fn document() -> Value {
    let mut components = Components::default();
    let operations = operations_with(&mut components);
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for operation in operations {
        let previous = paths
            .entry(operation.path)
            .or_default()
            .insert(operation.method.as_str().to_lowercase(), operation.object);
        assert!(
            previous.is_none(),
            "{} {} twice",
            operation.method,
            operation.path
        );
    }
    let mut schemas: Map<String, Value> = components.schemas.into_iter().collect();
    schemas.insert(
        "GatewayUnauthorized".into(),
        json!({
            "description": "API Gateway's own 401 (deployed, bearer routes): no `code`.",
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"const": "Unauthorized"}},
            "additionalProperties": false,
        }),
    );
    for (name, text) in EVENT_SCHEMAS {
        let schema: Value = serde_json::from_str(text).expect("docs/events/*.json are JSON");
        schemas.insert(name.into(), schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "phone-auth",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Phone sign-in and referrals. Every error is JSON `{code, message, detail}`: \
                `code` is stable and listed per operation and status, `message` is for people, \
                `detail` repeats it for seed-004's clients. Every route also answers without its \
                final slash. A wrong method is a 405 `method_not_allowed` with `Allow`. Deployed, \
                API Gateway may also answer 429 `{\"message\":\"Too Many Requests\"}` when its \
                throttling limits are reached. The domain events other services receive on \
                EventBridge are the `*V1` schemas (docs/events.md).",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        // Relative to this document's URL: the API beside it, stage prefix included.
        "servers": [{ "url": "." }],
        "tags": [
            {"name": TAG_SEED_000, "description": "seed-000's routes."},
            {"name": TAG_SEED_004, "description": "Connect Hub clients' routes: the same users and rules."},
            {"name": TAG_KEYS, "description": "What other services need to verify tokens."},
            {"name": TAG_DOCS, "description": "This document and its pages."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from sign-in or refresh (`access`, `access_token`).",
                },
            },
        },
    })
}

/// [`document`] as `openapi.json` holds it: pretty, with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serializes");
    text.push('\n');
    text
}
