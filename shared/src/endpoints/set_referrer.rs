//! `POST /users/set_referrer/` `{"invite_code"}` (bearer access token) →
//! names the caller's referrer, once, never closing a circle.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Endpoint;
use super::caller;
use crate::adapters::dynamo::UserTable;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::{json_body, now};
use crate::invite::InviteCode;
use crate::observe::{self, Fact};
use crate::referral::{ChainEnd, WalkError, walk_to_top};
use crate::store::{Referrer, ReferrerWrite, User, UserStore};
use crate::token::TokenVerifier;
use crate::user::UserId;

/// A chain top that keeps gaining referrers while we write, or parallel
/// joins into the same tree (they all condition-check its root, so DynamoDB
/// cancels all but one as TransactionConflict), mean contention on one tree;
/// after this many walks the caller gets 503 and retries.
const MAX_WALKS: u32 = 5;

/// Jittered backoff between walks: up to 25, 50, 100, 200 ms ("full jitter"),
/// at most 375 ms in all, so racing joins spread out instead of colliding again.
const BACKOFF_BASE_MS: u64 = 25;

pub struct SetReferrer<U = UserTable> {
    pub users: U,
    pub verifier: TokenVerifier,
    /// `REFERRAL_MAX_DEPTH`: the longest chain above a referrer that may be joined.
    pub max_chain_depth: usize,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct SetReferrerRequest {
    /// Another user's invite code: six letters and digits, case-sensitive.
    invite_code: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Message {
    message: String,
}

impl<U: UserStore> SetReferrer<U> {
    /// The request over any ports: what `handle` runs in the function, and
    /// what tests run over in-memory or scripted ones.
    pub async fn set_referrer(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let id = caller(&self.verifier, &request)?.user;
        let body: SetReferrerRequest = json_body(&request)?;
        let (_, referrer) = self.refer(id, &body.invite_code).await?;
        let message = format!(
            "You have become referral of user with invite code {}",
            referrer.invite_code
        );
        Ok(json_response(StatusCode::OK, &Message { message }))
    }

    /// Makes the owner of `invite_code` user `id`'s referrer, if the rules
    /// allow: the code exists and is not their own, they have no referrer
    /// yet, and no circle closes. Returns the user as they are now, and
    /// their referrer. set_referrer after reading its request.
    pub(crate) async fn refer(
        &self,
        id: UserId,
        invite_code: &str,
    ) -> Result<(User, Referrer), ApiError> {
        let (me, referrer) = self.proposed_referrer(id, invite_code).await?;
        self.join_tree(me, referrer).await
    }

    /// The first half of `refer`, its reads and the rules they decide: the
    /// user `id` and the owner of `invite_code`, if that owner may become
    /// their referrer. Writes nothing, so seed-004's
    /// `PATCH /api/clients/profile/` reads the profile's referrals alongside
    /// and writes only once every read has succeeded.
    pub(crate) async fn proposed_referrer(
        &self,
        id: UserId,
        invite_code: &str,
    ) -> Result<(User, Referrer), ApiError> {
        let code = InviteCode::parse(invite_code).ok_or(ApiError::MalformedInviteCode)?;

        let (me, owner) = tokio::join!(self.users.get(id), self.users.owner_of(&code));
        let me = me?.ok_or(ApiError::UserNotFound)?;
        if let Some(referrer) = me.referrer {
            return Err(ApiError::AlreadyReferred(referrer.invite_code.to_string()));
        }
        let owner = owner?.ok_or(ApiError::InviteCodeNotFound)?;
        if owner == id {
            return Err(ApiError::OwnInviteCode);
        }
        Ok((
            me,
            Referrer {
                id: owner,
                invite_code: code,
            },
        ))
    }

    /// The second half of `refer`: writes `referrer` as user `me`'s, unless
    /// that closes a circle or makes the chain too deep, walking the chain
    /// again whenever it moved meanwhile.
    pub(crate) async fn join_tree(
        &self,
        me: User,
        referrer: Referrer,
    ) -> Result<(User, Referrer), ApiError> {
        let id = me.id;
        for walk in 0..MAX_WALKS {
            if walk > 0 {
                // Contention on one tree, worth seeing in the logs (make bench counts these).
                tracing::info!(
                    walk,
                    "referral chain moved or a parallel join conflicted; walking again"
                );
                let cap = BACKOFF_BASE_MS << (walk - 1);
                let wait = rand::random_range(0..=cap);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            let top = match walk_to_top(&id, &referrer.id, self.max_chain_depth, |user| {
                self.users.referrer_of(user)
            })
            .await
            {
                Ok(ChainEnd::Top(top)) => top,
                Ok(ChainEnd::Cycle) => return Err(ApiError::ReferralCycle),
                Err(WalkError::Lookup(err)) => return Err(err.into()),
                Err(WalkError::TooDeep(max)) => return Err(ApiError::ReferralChainTooDeep { max }),
            };
            match self.users.set_referrer(id, &referrer, top, now()).await? {
                ReferrerWrite::Set => {
                    observe::note(Fact::ReferralSet);
                    let me = User {
                        referrer: Some(referrer.clone()),
                        ..me
                    };
                    return Ok((me, referrer));
                }
                ReferrerWrite::AlreadySet(code) => {
                    return Err(ApiError::AlreadyReferred(code.to_string()));
                }
                ReferrerWrite::ChainMoved => continue,
            }
        }
        tracing::warn!("referrer chain kept moving; giving up");
        Err(ApiError::Unavailable)
    }
}

impl Endpoint for SetReferrer {
    const NAME: &str = "set-referrer";
    const METHOD: Method = Method::POST;

    /// The user and the invite code's owner, read together.
    fn dynamodb_requests_at_once(&self) -> usize {
        2
    }

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(SetReferrer {
            users: UserTable::new(aws_sdk_dynamodb::Client::new(aws), config.users_table()?),
            verifier: config.token_verifier()?,
            max_chain_depth: config.referral_max_depth()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.set_referrer(request).await
    }
}
