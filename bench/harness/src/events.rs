//! API Gateway HTTP API (payload format 2.0) events, as the functions receive them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

static REQUESTS: AtomicU64 = AtomicU64::new(0);

pub const GET_CODE: &str = "/users/auth/get_code/";
pub const SEND_CODE: &str = "/users/auth/send_code/";
pub const REFRESH: &str = "/users/auth/refresh/";
pub const RETRIEVE: &str = "/users/retrieve/";
pub const SET_REFERRER: &str = "/users/set_referrer/";
pub const JWKS: &str = "/.well-known/jwks.json";
pub const WEB_PAGE: &str = "/";
/// The docs function's largest file.
pub const DOCS_BUNDLE: &str = "/docs/swagger-ui-bundle.js";
pub const LOGOUT: &str = "/users/auth/logout/";
pub const LOGOUT_ALL: &str = "/users/auth/logout_all/";
pub const SESSIONS: &str = "/users/sessions/";
pub const ME: &str = "/users/me/";
pub const REGISTER: &str = "/api/register/";
pub const LOGIN: &str = "/api/login/";
pub const CLIENT_PROFILE: &str = "/api/clients/profile/";
pub const REFERRALS: &str = "/users/referrals/";

/// One HTTP API request event; `body` is sent as JSON text.
pub fn http(method: &str, path: &str, body: Option<Value>, bearer: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&event(method, path, body, bearer)).expect("JSON values serialize")
}

/// The event of `http`, as JSON, for the routes that need more (a path parameter).
fn event(method: &str, path: &str, body: Option<Value>, bearer: Option<&str>) -> Value {
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    // Every request from its own client address, as a crowd of phones would
    // be: the per-IP budget is then counted (and billed) but never the limit.
    let source_ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    let body = body.map(|b| b.to_string());
    let mut headers = Map::new();
    headers.insert("accept".into(), json!("*/*"));
    headers.insert(
        "host".into(),
        json!("bench.execute-api.us-east-1.amazonaws.com"),
    );
    headers.insert("user-agent".into(), json!("phone-auth-bench"));
    headers.insert("x-forwarded-for".into(), json!(source_ip));
    headers.insert("x-forwarded-port".into(), json!("443"));
    headers.insert("x-forwarded-proto".into(), json!("https"));
    if let Some(body) = &body {
        headers.insert("content-type".into(), json!("application/json"));
        headers.insert("content-length".into(), json!(body.len().to_string()));
    }
    if let Some(token) = bearer {
        headers.insert("authorization".into(), json!(format!("Bearer {token}")));
    }
    // As API Gateway sends it: the route key has no final slash (but the
    // root's, `/`), the path is the client's.
    let route = match path.trim_end_matches('/') {
        "" => "ANY /".to_string(),
        trimmed => format!("ANY {trimmed}"),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "phone-auth-bench",
            },
            "requestId": format!("bench-{n}"),
            "routeKey": route,
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": epoch_ms,
        },
        "isBase64Encoded": false,
    });
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    event
}

pub fn get_code(phone: &str) -> Vec<u8> {
    http("POST", GET_CODE, Some(json!({ "phone": phone })), None)
}

pub fn send_code(phone: &str, code: &str) -> Vec<u8> {
    http(
        "POST",
        SEND_CODE,
        Some(json!({ "phone": phone, "password": code })),
        None,
    )
}

pub fn refresh(refresh_token: &str) -> Vec<u8> {
    http(
        "POST",
        REFRESH,
        Some(json!({ "refresh": refresh_token })),
        None,
    )
}

pub fn retrieve(access: &str) -> Vec<u8> {
    http("GET", RETRIEVE, None, Some(access))
}

pub fn set_referrer(access: &str, invite_code: &str) -> Vec<u8> {
    http(
        "POST",
        SET_REFERRER,
        Some(json!({ "invite_code": invite_code })),
        Some(access),
    )
}

pub fn jwks() -> Vec<u8> {
    http("GET", JWKS, None, None)
}

/// The web page, as a browser asks for it the first time (no ETag yet).
pub fn web() -> Vec<u8> {
    http("GET", WEB_PAGE, None, None)
}

pub fn docs() -> Vec<u8> {
    http("GET", DOCS_BUNDLE, None, None)
}

pub fn logout(refresh_token: &str) -> Vec<u8> {
    http(
        "POST",
        LOGOUT,
        Some(json!({ "refresh": refresh_token })),
        None,
    )
}

pub fn logout_all(access: &str) -> Vec<u8> {
    http("POST", LOGOUT_ALL, None, Some(access))
}

pub fn list_sessions(access: &str) -> Vec<u8> {
    http("GET", SESSIONS, None, Some(access))
}

/// `DELETE /users/sessions/{id}/` as API Gateway delivers it: the route key
/// is the template's, and the id is in `pathParameters` as well as in the path
/// (the function takes the parameter first).
pub fn revoke_session(access: &str, session_id: &str) -> Vec<u8> {
    let mut event = event(
        "DELETE",
        &format!("{SESSIONS}{session_id}/"),
        None,
        Some(access),
    );
    let route = format!("ANY {SESSIONS}{{id}}");
    event["routeKey"] = json!(route);
    event["requestContext"]["routeKey"] = json!(route);
    event["pathParameters"] = json!({ "id": session_id });
    serde_json::to_vec(&event).expect("JSON values serialize")
}

pub fn delete_account(access: &str) -> Vec<u8> {
    http("DELETE", ME, None, Some(access))
}

/// `POST /api/register/` (seed-004): step 1 (`code` None) asks for a code,
/// step 2 creates the user with it.
pub fn register(phone: &str, code: Option<&str>) -> Vec<u8> {
    http("POST", REGISTER, Some(two_step_body(phone, code)), None)
}

/// `POST /api/login/` (seed-004): the same two steps, for a phone with an account.
pub fn login(phone: &str, code: Option<&str>) -> Vec<u8> {
    http("POST", LOGIN, Some(two_step_body(phone, code)), None)
}

fn two_step_body(phone: &str, code: Option<&str>) -> Value {
    match code {
        None => json!({ "phone": phone }),
        Some(code) => json!({ "phone": phone, "sms_code": code }),
    }
}

/// `GET /api/clients/profile/` (seed-004): the route is `ANY` (PATCH has its own).
pub fn client_profile(access: &str) -> Vec<u8> {
    http("GET", CLIENT_PROFILE, None, Some(access))
}

/// `GET /users/referrals/`: the first page, at the default size.
pub fn list_referrals(access: &str) -> Vec<u8> {
    http("GET", REFERRALS, None, Some(access))
}

/// `GET /users/referrals/?cursor=`: the page after the one that gave `cursor`.
pub fn list_referrals_after(access: &str, cursor: &str) -> Vec<u8> {
    let mut event = event("GET", REFERRALS, None, Some(access));
    // Cursors are URL-safe base64: no escaping needed.
    event["rawQueryString"] = json!(format!("cursor={cursor}"));
    event["queryStringParameters"] = json!({ "cursor": cursor });
    serde_json::to_vec(&event).expect("JSON values serialize")
}

/// `PATCH /api/clients/profile/` (seed-004) as API Gateway delivers it: the
/// template's `PATCH` route, which it prefers to the path's `ANY` one.
pub fn update_client_profile(access: &str, invite_code: &str) -> Vec<u8> {
    let mut event = event(
        "PATCH",
        CLIENT_PROFILE,
        Some(json!({ "invitation_code": invite_code })),
        Some(access),
    );
    let route = format!("PATCH {}", CLIENT_PROFILE.trim_end_matches('/'));
    event["routeKey"] = json!(route);
    event["requestContext"]["routeKey"] = json!(route);
    serde_json::to_vec(&event).expect("JSON values serialize")
}

/// Any request does for the empty function.
pub fn baseline() -> Vec<u8> {
    http("GET", "/", None, None)
}
