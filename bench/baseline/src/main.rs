//! The yardstick of `make bench`: an empty `lambda_http` function built with the
//! same dependencies' features, profile and toolchain as the real functions.
//! It does what every function does before its own work (tracing subscriber,
//! current-thread runtime, the runtime API loop) and nothing else.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    lambda_http::run(service_fn(|_request: Request| async {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .map_err(Error::from)
    }))
    .await
}
