use phone_auth::endpoints::{SetReferrer, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<SetReferrer>().await
}
