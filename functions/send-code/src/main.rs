use phone_auth::endpoints::{SendCode, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<SendCode>().await
}
