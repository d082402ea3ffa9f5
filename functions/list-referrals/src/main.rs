use phone_auth::endpoints::{ListReferrals, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    run::<ListReferrals>().await
}
