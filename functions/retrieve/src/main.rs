use phone_auth::endpoints::{Retrieve, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<Retrieve>().await
}
