//! `DELETE /users/me/` (bearer access token) → 204: the caller's account is
//! deleted (README "Deleting an account" says what is erased and what is kept).

use aws_config::SdkConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use super::{Endpoint, caller, no_content};
use crate::adapters::dynamo::{OtpTable, SessionTable, UserTable};
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::http::now;
use crate::observe::{self, Fact};
use crate::store::{OtpStore, SessionStore, UserStore};
use crate::token::TokenVerifier;

pub struct DeleteAccount<U = UserTable, S = SessionTable, O = OtpTable> {
    pub users: U,
    pub sessions: S,
    pub otps: O,
    pub verifier: TokenVerifier,
}

impl<U: UserStore, S: SessionStore, O: OtpStore> DeleteAccount<U, S, O> {
    /// The phone's pending code and every session record go first, the
    /// user last (one transaction: tombstone, phone freed, code retired).
    /// A failure anywhere answers 503 and a retry with the same access
    /// token redoes it all, because the user, found by id, still has their
    /// phone until that last write; once it is done a retry finds nobody and
    /// answers 204 again.
    ///
    /// Sessions are found through an eventually consistent index: one
    /// started in the last second or so may be missed, and stays refreshable
    /// until it expires, for an id that no profile answers for any more.
    pub async fn delete_account(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let id = caller(&self.verifier, &request)?.user;
        let Some(user) = self.users.get(id).await? else {
            // Deleted already (a retry whose first answer was lost).
            return Ok(no_content());
        };
        let (erased, sids) = tokio::join!(
            self.otps.erase_code(&user.phone),
            self.sessions.session_ids_of(&id)
        );
        erased?;
        for sid in sids? {
            self.sessions.erase(&sid).await?;
        }
        self.users.delete(&user, now()).await?;
        observe::note(Fact::AccountDeleted);
        Ok(no_content())
    }
}

impl Endpoint for DeleteAccount {
    const NAME: &str = "delete-account";
    const METHOD: Method = Method::DELETE;

    /// The phone's code erased while the sessions are listed.
    fn dynamodb_requests_at_once(&self) -> usize {
        2
    }

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(DeleteAccount {
            users: UserTable::new(dynamo.clone(), config.users_table()?),
            sessions: SessionTable::new(dynamo.clone(), config.sessions_table()?),
            otps: OtpTable::new(dynamo, config.otps_table()?),
            verifier: config.token_verifier()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.delete_account(request).await
    }
}
