use phone_auth::endpoints::{Logout, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Logout>().await
}
