//! One module per Lambda function. Each endpoint is built once per cold start
//! from configuration (`from_config`) and then serves many requests (`handle`).

mod get_code;
mod jwks;
mod refresh;
mod retrieve;
mod send_code;
mod set_referrer;

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, SdkConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use lambda_http::http::{Method, header};
use lambda_http::{Body, Request, RequestExt, Response};

pub use get_code::GetCode;
pub use jwks::Jwks;
pub use refresh::Refresh;
pub use retrieve::Retrieve;
pub use send_code::SendCode;
pub use set_referrer::SetReferrer;

use crate::config::{Config, ConfigError};
use crate::cors::Cors;
use crate::error::ApiError;
use crate::store::StoreError;

pub trait Endpoint: Send + Sync + Sized {
    /// The function's name: its binary (`functions/<NAME>`), and the app name
    /// its AWS requests carry (`app/<NAME>` in the SDK's user agent), so
    /// CloudTrail, and the DynamoDB recorder of `make test`, can tell which
    /// function made a request.
    const NAME: &str;
    const METHOD: Method;

    /// Builds clients and keys. Runs once per cold start and does no network I/O.
    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError>;

    fn handle(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// Method check, the endpoint, and the one mapping of errors to responses.
pub async fn serve<E: Endpoint>(endpoint: &E, request: Request) -> Response<Body> {
    let result = match crate::http::require_method(&request, &E::METHOD) {
        Ok(()) => endpoint.handle(request).await,
        Err(err) => Err(err),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// Time kept back from the invocation's deadline to answer: when the
/// dependencies are slow, the client gets this service's JSON 503, never
/// API Gateway's bare timeout.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// One AWS SDK operation, retries included, may take this long. The
/// function's timeout in template.yaml must leave room for two of them, plus
/// the answer margin (shared/tests/routes.rs checks it).
pub const SDK_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// What a cold start builds: the endpoint and the CORS rules around it.
pub struct Function<E> {
    endpoint: E,
    cors: Cors,
}

impl<E: Endpoint> Function<E> {
    pub fn new(endpoint: E, cors: Cors) -> Self {
        Function { endpoint, cors }
    }

    pub fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Function::new(E::from_config(config, aws)?, config.cors()?))
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
            return self.cors.preflight(origin.as_ref(), &E::METHOD);
        }
        let budget = request
            .lambda_context_ref()
            .and_then(|context| context.deadline().duration_since(SystemTime::now()).ok())
            .map(|left| left.saturating_sub(ANSWER_MARGIN));
        let handled = serve(&self.endpoint, request);
        let response = match budget {
            Some(budget) => tokio::time::timeout(budget, handled)
                .await
                .unwrap_or_else(|_| {
                    tracing::error!("the request ran out of time before its deadline");
                    ApiError::Unavailable.into_response()
                }),
            None => handled.await,
        };
        self.cors.decorate(origin.as_ref(), response)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "storage request failed");
        ApiError::Unavailable
    }
}

/// AWS SDK configuration shared by every client of a function: region and
/// credentials from the Lambda environment (no discovery traffic), and
/// timeouts well inside the function's own.
///
/// An empty service endpoint variable (`AWS_ENDPOINT_URL_DYNAMODB=""`) counts
/// as unset: template.yaml declares the endpoints `sam local` points at its
/// peers with empty values (SAM's `--env-vars` overrides only declared
/// variables), and the SDK on its own would take "" as the endpoint and panic
/// at the first request (shared/tests/sdk_endpoints.rs).
pub async fn aws_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(SDK_OPERATION_TIMEOUT)
        .build();
    let loaded = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let settings = EmptyIsUnset(loaded.clone());
    loaded.into_builder().service_config(settings).build()
}

/// The SDK's per-service settings (`AWS_ENDPOINT_URL_<SERVICE>` and the
/// like, from the environment), with empty values left out.
#[derive(Debug)]
struct EmptyIsUnset(SdkConfig);

impl LoadServiceConfig for EmptyIsUnset {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        self.0
            .service_config()?
            .load_config(key)
            .filter(|value| !value.trim().is_empty())
    }
}

/// The whole `main` of a function: build once, then serve until the runtime stops us.
pub async fn run<E: Endpoint>() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let aws = aws_config()
        .await
        .into_builder()
        .app_name(AppName::new(E::NAME).expect("function names are valid app names"))
        .build();
    let function = Function::<E>::from_config(&Config::from_env(), &aws).inspect_err(|err| {
        tracing::error!(error = %err, "configuration error");
    })?;
    let function = &function;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(function.serve(request).await)
    }))
    .await
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
        let response = Function::new(Stuck, Cors::default())
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
