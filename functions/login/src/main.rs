use phone_auth::endpoints::{Login, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Login>().await
}
