use phone_auth::endpoints::{RevokeSession, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<RevokeSession>().await
}
