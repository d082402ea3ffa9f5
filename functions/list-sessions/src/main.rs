use phone_auth::endpoints::{ListSessions, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<ListSessions>().await
}
