use phone_auth::endpoints::{Register, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Register>().await
}
