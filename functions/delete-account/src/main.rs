use phone_auth::endpoints::{DeleteAccount, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<DeleteAccount>().await
}
