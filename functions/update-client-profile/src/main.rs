use phone_auth::endpoints::{UpdateClientProfile, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<UpdateClientProfile>().await
}
