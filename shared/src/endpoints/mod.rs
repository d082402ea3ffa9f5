//! One module per Lambda function. Each endpoint is built once per cold start
//! from configuration (`from_config`) and then serves many requests (`handle`).

mod client_profile;
mod delete_account;
mod docs;
mod get_code;
mod jwks;
mod list_referrals;
mod list_sessions;
mod login;
mod logout;
mod logout_all;
pub mod openapi;
mod refresh;
mod register;
mod retrieve;
mod revoke_session;
mod send_code;
mod set_referrer;
mod two_step;
mod update_client_profile;
mod web;

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_types::sdk_config::SharedCredentialsProvider;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

pub use client_profile::ClientProfile;
pub use delete_account::DeleteAccount;
pub use docs::Docs;
pub use get_code::GetCode;
pub use jwks::Jwks;
pub use list_referrals::ListReferrals;
pub use list_sessions::ListSessions;
pub use login::Login;
pub use logout::Logout;
pub use logout_all::LogoutAll;
pub use refresh::Refresh;
pub use register::Register;
pub use retrieve::Retrieve;
pub use revoke_session::RevokeSession;
pub use send_code::SendCode;
pub use set_referrer::SetReferrer;
pub use two_step::TwoStep;
pub use update_client_profile::UpdateClientProfile;
pub use web::Web;

use crate::adapters::aws_http::https_client;
use crate::config::{Config, ConfigError};
use crate::cors::Cors;
use crate::error::ApiError;
use crate::http::bearer_token;
use crate::observe::{Arrival, Reporter};
use crate::session::SessionId;
use crate::store::StoreError;
use crate::token::{TokenKind, TokenVerifier};
use crate::user::UserId;

pub trait Endpoint: Send + Sync + Sized {
    /// The function's name: its binary (`functions/<NAME>`), and the app name
    /// its AWS requests carry (`app/<NAME>` in the SDK's user agent), so
    /// CloudTrail, and the DynamoDB recorder of `make test`, can tell which
    /// function made a request.
    const NAME: &str;
    const METHOD: Method;
    /// Methods other functions serve at this function's path (seed-004's
    /// profile: GET here, PATCH in its own function): a 405 and a preflight
    /// answer name them too.
    const ALSO_AT_PATH: &'static [Method] = &[];
    /// Whether the function calls AWS. One that does not (jwks) gets no
    /// SDK configuration and so can build no AWS client.
    const USES_AWS: bool = true;
    /// Whether requests carry a phone number: their records then show its
    /// `phone_ref`, whose key the function reads (observe.rs).
    const READS_PHONES: bool = false;

    /// Builds clients and keys. Runs once per cold start and does no network I/O.
    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError>;

    /// The most DynamoDB requests one request sends at once (its
    /// `tokio::join!`). A cold start opens that many connections: a request
    /// that finds none idle opens its own, and pays its TLS handshake at a
    /// 128 MB invocation's share of the CPU (docs/performance.md, step 12).
    fn dynamodb_requests_at_once(&self) -> usize {
        1
    }

    /// The connections a cold start opens once the function is built
    /// ([`start`]; never called for a function that calls no AWS):
    /// DynamoDB's, which every function that calls AWS uses, as many as
    /// [`Endpoint::dynamodb_requests_at_once`]. An endpoint that also sends
    /// SMS opens its provider's too.
    fn open_connections(&self, aws: &SdkConfig) -> impl Future<Output = ()> + Send {
        crate::adapters::dynamo::open_connections(aws, self.dynamodb_requests_at_once())
    }

    fn handle(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// Method check, the endpoint, and its error as an answer
/// ([`ApiError::into_response`], the one mapping): the endpoint alone, for
/// tests. The functions serve through [`Function::serve`], which adds the
/// preflights, the deadline, the report and CORS around the same steps.
pub async fn serve<E: Endpoint>(endpoint: &E, request: Request) -> Response<Body> {
    attempt(endpoint, request)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// Method check and the endpoint, the error not yet an answer.
async fn attempt<E: Endpoint>(endpoint: &E, request: Request) -> Result<Response<Body>, ApiError> {
    crate::http::require_method(&request, &E::METHOD, E::ALSO_AT_PATH)?;
    endpoint.handle(request).await
}

/// The headers of a page served to browsers (the docs pages, the web page):
/// its Content-Security-Policy, no content-type sniffing, and no referrer
/// (a page's URL may hold something of the user's: the web page's
/// `?invite=`).
pub(crate) fn page_headers(headers: &mut HeaderMap, content_security_policy: &'static str) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Time kept back from the invocation's deadline to answer: when the
/// dependencies are slow, the client gets this service's JSON 503, never
/// API Gateway's bare timeout.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// One AWS SDK operation, retries included, may take this long. The
/// function's timeout in template.yaml must leave room for two of them, plus
/// the answer margin (shared/tests/routes.rs checks it).
pub const SDK_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// What a cold start builds: the endpoint, the CORS rules around it, and
/// what reports each request (observe.rs).
pub struct Function<E> {
    endpoint: E,
    cors: Cors,
    reporter: Reporter,
}

impl<E: Endpoint> Function<E> {
    pub fn new(endpoint: E, cors: Cors, reporter: Reporter) -> Self {
        Function {
            endpoint,
            cors,
            reporter,
        }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Function::new(
            E::from_config(config, aws)?,
            config.cors()?,
            config.reporter(E::NAME, E::READS_PHONES),
        ))
    }

    /// One request: a preflight `OPTIONS` is answered here (204); anything
    /// else goes to the endpoint, within the invocation's deadline less
    /// [`ANSWER_MARGIN`]. Either way an allowed origin may read the answer.
    ///
    /// Cut off at the deadline, a request leaves no half-written state: each
    /// storage write is one atomic request, ordered so that stopping between
    /// two of them is safe (a user created before the code is used; a code
    /// stored before its SMS is only held for the cooldown).
    pub async fn serve(&self, request: Request) -> Response<Body> {
        // Only the Origin header outlives the request, which the endpoint takes.
        let origin = request.headers().get(header::ORIGIN).cloned();
        if request.method() == Method::OPTIONS {
            let methods = crate::http::allowed_methods(&E::METHOD, E::ALSO_AT_PATH);
            return self.cors.preflight(origin.as_ref(), &methods);
        }
        let budget = request
            .lambda_context_ref()
            .and_then(|context| context.deadline().duration_since(SystemTime::now()).ok())
            .map(|left| left.saturating_sub(ANSWER_MARGIN));
        let arrival = arrival(&request);
        // On the heap: an endpoint's future is large (a debug build's would
        // crowd a test thread's stack once wrapped in the report's), and one
        // small allocation per request costs nothing next to a DynamoDB call.
        let handled = Box::pin(attempt(&self.endpoint, request));
        let answered = async {
            let outcome = match budget {
                Some(budget) => tokio::time::timeout(budget, handled)
                    .await
                    .unwrap_or_else(|_| {
                        tracing::error!("the request ran out of time before its deadline");
                        Err(ApiError::Unavailable)
                    }),
                None => handled.await,
            };
            let error_code = outcome.as_ref().err().map(|err| err.status_and_code().1);
            let response = outcome.unwrap_or_else(ApiError::into_response);
            let status = response.status().as_u16();
            (response, status, error_code)
        };
        let response = self.reporter.observe(arrival, answered).await;
        self.cors.decorate(origin.as_ref(), response)
    }
}

/// What the request's record needs to know before the endpoint takes it.
fn arrival(request: &Request) -> Arrival {
    let route = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    Arrival {
        // Never the raw path: a session id may be in it.
        route: route.unwrap_or_else(|| format!("{} (no route key)", request.method())),
        // Lambda's invocation id, as in the platform's own log lines.
        request_id: request
            .lambda_context_ref()
            .map(|context| context.request_id.clone())
            .unwrap_or_default(),
        source_ip: crate::http::source_ip(request).map(str::to_string),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(256).collect()),
    }
}

/// Who calls a bearer route: the user, and the session their access token
/// was issued for (None for tokens minted before sessions existed).
pub(crate) struct Caller {
    pub user: UserId,
    pub sid: Option<SessionId>,
}

pub(crate) fn caller(verifier: &TokenVerifier, request: &Request) -> Result<Caller, ApiError> {
    let verified = verifier.verify(bearer_token(request)?, TokenKind::Access)?;
    crate::observe::user(verified.user);
    Ok(Caller {
        user: verified.user,
        sid: verified.claims.sid.as_deref().and_then(SessionId::parse),
    })
}

/// 204, for the routes that answer nothing. No body, so no Content-Type;
/// never cached, like every answer of this API.
pub(crate) fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "storage request failed");
        ApiError::Unavailable
    }
}

/// AWS SDK configuration shared by every client of a function, built from
/// the Lambda environment rather than by the SDK's default chain
/// (`aws_config::defaults(..).load()`), which looks for profile files and
/// builds SSO, STS, ECS and IMDS providers at every cold start:
///
/// * region: `AWS_REGION` (Lambda's);
/// * credentials: the SDK's environment provider (Lambda gives the role's
///   session in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`),
///   behind the SDK's usual lazy identity cache;
/// * timeouts well inside the function's own, the SDK's standard retries;
/// * the SDK's HTTPS client trusting Amazon Trust Services' roots, or
///   `SSL_CERT_FILE`'s certificates (adapters::aws_http: the system store
///   cost 4 ms per cold start);
/// * endpoints: `AWS_ENDPOINT_URL_DYNAMODB`, `_SNS` and `_EVENTBRIDGE` (local
///   runs and tests), an empty value counting as unset: template.yaml
///   declares them empty so that `sam local` can point them at its peers
///   (SAM's `--env-vars` overrides only declared variables), and the SDK on
///   its own would take "" as the endpoint and panic at the first request
///   (shared/tests/sdk_endpoints.rs). Nothing else (no `AWS_ENDPOINT_URL`,
///   no `~/.aws` files) is read.
///
/// No I/O: the clients made from it open their connections on first use.
pub fn aws_config(config: &Config) -> Result<SdkConfig, ConfigError> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(SDK_OPERATION_TIMEOUT)
        .build();
    let endpoints = EndpointUrls {
        dynamodb: config.dynamodb_endpoint_url(),
        sns: config.sns_endpoint_url(),
        eventbridge: config.eventbridge_endpoint_url(),
    };
    Ok(SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.aws_region()?))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .identity_cache(IdentityCache::lazy().build())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard())
        .http_client(https_client(&config.trusted_roots()?))
        .service_config(endpoints)
        .build())
}

/// The per-service settings the SDK's clients ask for: only the endpoint
/// URLs of the services this project calls, when set.
#[derive(Debug)]
struct EndpointUrls {
    dynamodb: Option<String>,
    sns: Option<String>,
    eventbridge: Option<String>,
}

impl LoadServiceConfig for EndpointUrls {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        match (key.env(), key.service_id()) {
            ("AWS_ENDPOINT_URL", "DynamoDB") => self.dynamodb.clone(),
            ("AWS_ENDPOINT_URL", "SNS") => self.sns.clone(),
            ("AWS_ENDPOINT_URL", "EventBridge") => self.eventbridge.clone(),
            _ => None,
        }
    }
}

/// [`aws_config`] for the function `name`: its requests carry `app/<name>`.
pub fn function_aws_config(config: &Config, name: &'static str) -> Result<SdkConfig, ConfigError> {
    Ok(aws_config(config)?
        .into_builder()
        .app_name(AppName::new(name).expect("function names are valid app names"))
        .build())
}

/// What a cold start builds, from configuration alone: the SDK
/// configuration (only for a function that calls AWS), the endpoint and its
/// CORS rules. Configuration is read here, once. No network: [`start`] is
/// this and the connection opened.
pub fn build<E: Endpoint>(config: &Config) -> Result<Function<E>, ConfigError> {
    Ok(build_with_sdk_config::<E>(config)?.0)
}

/// [`build`], and the SDK configuration whose HTTP client the function's
/// AWS clients share.
fn build_with_sdk_config<E: Endpoint>(
    config: &Config,
) -> Result<(Function<E>, SdkConfig), ConfigError> {
    let aws = sdk_config::<E>(config)?;
    Ok((Function::from_config(config, &aws)?, aws))
}

fn sdk_config<E: Endpoint>(config: &Config) -> Result<SdkConfig, ConfigError> {
    if E::USES_AWS {
        function_aws_config(config, E::NAME)
    } else {
        // No region, credentials or HTTP client: nothing could be sent with it.
        Ok(SdkConfig::builder().build())
    }
}

/// The whole `main` of a function: build once, then serve until the runtime stops us.
pub async fn run<E: Endpoint>() -> Result<(), lambda_http::Error> {
    crate::observe::init_logging();
    let function = start::<E>(&Config::from_env()).await.inspect_err(|err| {
        tracing::error!(error = %err, "configuration error");
    })?;
    let function = &function;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(function.serve(request).await)
    }))
    .await
}

/// The most a cold start waits for the connections it opens
/// ([`Endpoint::open_connections`]): a dependency that is down or slow
/// delays init this much at worst, and the first request then connects as
/// it would have anyway.
pub const OPEN_CONNECTION_LIMIT: Duration = Duration::from_millis(300);

/// A cold start's work before the first request: building the function,
/// then, for one that calls AWS, opening its connections
/// ([`Endpoint::open_connections`]) in the HTTP client that the clients
/// just built share, for at most [`OPEN_CONNECTION_LIMIT`].
///
/// One after the other: building on a blocking thread while this one opened
/// the connection was measured, and init was no shorter (docs/performance.md).
pub async fn start<E: Endpoint>(config: &Config) -> Result<Function<E>, ConfigError> {
    let (function, aws) = build_with_sdk_config::<E>(config)?;
    if E::USES_AWS {
        // Boxed, so that a function that calls no AWS links no DynamoDB
        // client: an awaited future's code is part of the caller's state
        // machine even where its branch cannot run (jwks, web and docs
        // grew by 0.9–1.1 MB of zip without the box).
        let open: std::pin::Pin<Box<dyn Future<Output = ()> + '_>> =
            Box::pin(function.endpoint.open_connections(&aws));
        let outcome = tokio::time::timeout(OPEN_CONNECTION_LIMIT, open).await;
        tracing::debug!(within_limit = outcome.is_ok(), "connections opened at init");
    }
    Ok(function)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint whose dependency never answers.
    struct Stuck;

    impl Endpoint for Stuck {
        const NAME: &str = "stuck";
        const METHOD: Method = Method::POST;

        fn from_config(_: &Config, _: &SdkConfig) -> Result<Self, ConfigError> {
            Ok(Stuck)
        }

        async fn handle(&self, _: Request) -> Result<Response<Body>, ApiError> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Response::new(Body::Empty))
        }
    }

    /// Jwks calls no AWS service: it starts without any AWS setting (it
    /// builds no SDK configuration, so it cannot build a client), while a
    /// function that calls DynamoDB needs its region.
    #[test]
    fn only_functions_that_call_aws_build_an_aws_configuration() {
        let (private, public) = crate::token::generate_key_pair();
        let vars = [
            ("TOKEN_PRIVATE_KEY", private),
            ("TOKEN_PUBLIC_KEY", public),
            ("USERS_TABLE", "users".to_string()),
        ];
        let config = |extra: &[(&str, &str)]| {
            let mut vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Config::from_lookup(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        assert!(build::<Jwks>(&config(&[])).is_ok());
        assert_eq!(
            build::<Retrieve>(&config(&[])).err(),
            Some(ConfigError::Missing("AWS_REGION"))
        );
        assert!(build::<Retrieve>(&config(&[("AWS_REGION", "eu-central-1")])).is_ok());
    }

    fn post_with_deadline(seconds_left: u64) -> Request {
        let mut context = lambda_http::Context::default();
        let deadline = SystemTime::now() + Duration::from_secs(seconds_left);
        context.deadline = deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut request = Request::new(Body::Empty).with_lambda_context(context);
        *request.method_mut() = Method::POST;
        request
    }

    // Paused tokio time: the 3600 s wait and the deadline race deterministically.
    #[tokio::test(start_paused = true)]
    async fn a_request_out_of_time_gets_a_json_503_before_the_deadline() {
        let started = tokio::time::Instant::now();
        let response = Function::new(
            Stuck,
            Cors::default(),
            Config::from_lookup(|_| None).reporter("stuck", false),
        )
        .serve(post_with_deadline(10))
        .await;
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["code"], "service_unavailable");
        let took = started.elapsed();
        assert!(
            took <= Duration::from_secs(10) - ANSWER_MARGIN && took >= Duration::from_secs(9),
            "answered after {took:?}"
        );
    }
}
