use phone_auth::endpoints::{Docs, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Docs>().await
}
