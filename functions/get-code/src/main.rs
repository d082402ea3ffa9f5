use phone_auth::endpoints::{GetCode, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<GetCode>().await
}
