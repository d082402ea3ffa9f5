//! One module per Lambda function. Each endpoint is built once per cold start
//! from configuration (`from_config`) and then serves many requests (`handle`).

mod get_code;
mod refresh;
mod retrieve;
mod send_code;
mod set_referrer;

use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

pub use get_code::GetCode;
pub use refresh::Refresh;
pub use retrieve::Retrieve;
pub use send_code::SendCode;
pub use set_referrer::SetReferrer;

use crate::config::{Config, ConfigError};
use crate::cors::Cors;
use crate::error::ApiError;
use crate::store::StoreError;

pub trait Endpoint: Send + Sync + Sized {
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

/// What a cold start builds: the endpoint and the CORS rules around it.
pub struct Function<E> {
    endpoint: E,
    cors: Cors,
}

impl<E: Endpoint> Function<E> {
    pub fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Function {
            endpoint: E::from_config(config, aws)?,
            cors: config.cors()?,
        })
    }

    /// One request: a preflight `OPTIONS` is answered here (204); anything
    /// else goes to the endpoint. Either way an allowed origin may read it.
    pub async fn serve(&self, request: Request) -> Response<Body> {
        let headers = request.headers().clone();
        if request.method() == Method::OPTIONS {
            return self.cors.preflight(&headers, &E::METHOD);
        }
        let response = serve(&self.endpoint, request).await;
        self.cors.decorate(&headers, response)
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
pub async fn aws_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// The whole `main` of a function: build once, then serve until the runtime stops us.
pub async fn run<E: Endpoint>() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let function = Function::<E>::from_config(&Config::from_env(), &aws_config().await)
        .inspect_err(|err| {
            tracing::error!(error = %err, "configuration error");
        })?;
    let function = &function;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(function.serve(request).await)
    }))
    .await
}
