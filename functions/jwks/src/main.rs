use phone_auth::endpoints::{Jwks, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Jwks>().await
}
