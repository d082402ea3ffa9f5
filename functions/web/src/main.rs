use phone_auth::endpoints::{Web, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Web>().await
}
