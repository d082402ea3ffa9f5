use phone_auth::endpoints::{Refresh, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Refresh>().await
}
