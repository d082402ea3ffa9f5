//! Reading requests: method, JSON body, bearer token. Errors are `ApiError`s,
//! turned into responses in `error.rs`.

use lambda_http::http::{Method, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::token::TokenError;

/// Every request body of this API is a few dozen bytes; a larger one is
/// refused before JSON parsing. This bounds the parsing work, not what is
/// received: by the time the handler runs, the Lambda runtime has already
/// read and decoded the whole event (up to Lambda's 6 MB payload limit;
/// HTTP APIs cannot set a smaller body limit).
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// The request must use `method`; a 405 names it and the methods other
/// functions serve at the same path (`also_at_path`), all the path allows.
pub fn require_method(
    request: &Request,
    method: &Method,
    also_at_path: &[Method],
) -> Result<(), ApiError> {
    if request.method() == method {
        return Ok(());
    }
    Err(ApiError::MethodNotAllowed {
        allow: allowed_methods(method, also_at_path),
    })
}

/// What `Allow` names: `method`, then the methods other functions serve at
/// the same path.
pub fn allowed_methods(method: &Method, also_at_path: &[Method]) -> String {
    std::iter::once(method)
        .chain(also_at_path)
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson(
            "the body is empty; send a JSON object".into(),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    }
    T::deserialize(value).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

pub fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(ApiError::MissingToken)?;
    // Two credentials are one too many: whichever was meant, it is not for
    // this function to guess. (API Gateway joins repeated headers with a
    // comma, which no token contains: refused there too.)
    if values.next().is_some() {
        return Err(TokenError::Invalid.into());
    }
    let value = value.to_str().map_err(|_| ApiError::MissingToken)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token.trim())
}

/// The client's address as API Gateway saw it (`requestContext.http.sourceIp`).
/// Never a header: `X-Forwarded-For` is whatever the client wrote.
pub fn source_ip(request: &Request) -> Option<&str> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// What a new session keeps about the client: its User-Agent and source
/// address, truncated (`session::ClientInfo`).
pub fn client_info(request: &Request) -> crate::session::ClientInfo {
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok());
    crate::session::ClientInfo::new(user_agent, source_ip(request))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &str) -> Request {
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = Method::POST;
        request
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct PhoneBody {
        phone: String,
    }

    #[test]
    fn body_errors_are_classified() {
        let code = |r: Result<PhoneBody, ApiError>| r.unwrap_err().status_and_code().1;
        assert_eq!(code(json_body(&post(""))), "invalid_json");
        assert_eq!(code(json_body(&post("{\"phone\":"))), "invalid_json");
        assert_eq!(code(json_body(&post("{'phone': '+7'}"))), "invalid_json");
        assert_eq!(code(json_body(&post("[\"+7\"]"))), "invalid_request");
        assert_eq!(code(json_body(&post("{}"))), "invalid_request");
        assert_eq!(
            code(json_body(&post("{\"phone\": 79001234567}"))),
            "invalid_request"
        );
        assert_eq!(code(json_body(&post("null"))), "invalid_request");
        let big = format!("{{\"phone\": \"{}\"}}", "1".repeat(MAX_BODY_BYTES));
        assert_eq!(code(json_body(&post(&big))), "payload_too_large");
        assert_eq!(
            json_body::<PhoneBody>(&post("{\"phone\":\"+7\",\"extra\":1}"))
                .unwrap()
                .phone,
            "+7"
        );
    }

    #[test]
    fn bearer_tokens_are_read_leniently_but_required() {
        let with = |value: &str| {
            let mut request = post("");
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, value.parse().unwrap());
            request
        };
        assert_eq!(bearer_token(&with("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&with("bearer  abc ")).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            assert!(
                matches!(bearer_token(&with(bad)), Err(ApiError::MissingToken)),
                "{bad}"
            );
        }
        assert!(matches!(
            bearer_token(&post("")),
            Err(ApiError::MissingToken)
        ));
        let mut twice = with("Bearer abc");
        twice
            .headers_mut()
            .append(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert!(matches!(
            bearer_token(&twice),
            Err(ApiError::Token(TokenError::Invalid))
        ));
    }

    #[test]
    fn wrong_method_names_the_right_one() {
        let err = require_method(&post(""), &Method::GET, &[]).unwrap_err();
        assert!(matches!(err, ApiError::MethodNotAllowed { allow } if allow == "GET"));
        assert!(require_method(&post(""), &Method::POST, &[]).is_ok());
        // Another function serves PATCH at the path: a POST learns of both,
        // and the PATCH meant for it is not this function's either.
        let err = require_method(&post(""), &Method::GET, &[Method::PATCH]).unwrap_err();
        assert!(matches!(err, ApiError::MethodNotAllowed { allow } if allow == "GET, PATCH"));
    }
}
