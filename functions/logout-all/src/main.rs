use phone_auth::endpoints::{LogoutAll, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<LogoutAll>().await
}
