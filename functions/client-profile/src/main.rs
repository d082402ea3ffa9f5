use phone_auth::endpoints::{ClientProfile, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<ClientProfile>().await
}
