//! `GET /users/referrals/?limit=&cursor=` (bearer access token) → `{"referrals":
//! [{"phone", "joined_at"}], "next_cursor"}`: the caller's referrals, newest
//! first, a page at a time. `limit` 1–100 (default 50); `next_cursor` is
//! null exactly when no referral follows, and otherwise continues the list
//! when passed back as `cursor` (by this caller only: crate::cursor).

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Endpoint, caller};
use crate::adapters::dynamo::UserTable;
use crate::config::{Config, ConfigError};
use crate::cursor::{CursorKey, PageSize};
use crate::error::{ApiError, json_response};
use crate::phone::Phone;
use crate::store::{Order, UserStore};
use crate::token::TokenVerifier;

pub struct ListReferrals<U = UserTable> {
    pub users: U,
    pub verifier: TokenVerifier,
    pub cursor_key: CursorKey,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReferralView {
    phone: Phone,
    /// When they entered the caller's invite code (unix seconds).
    joined_at: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReferralPage {
    referrals: Vec<ReferralView>,
    #[schema(required)]
    next_cursor: Option<String>,
}

impl<U: UserStore> ListReferrals<U> {
    pub async fn list(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let me = caller(&self.verifier, &request)?.user;
        let query = request.query_string_parameters_ref();
        let values = |name: &str| query.and_then(|q| q.all(name)).unwrap_or_default();
        let size = PageSize::from_query(&values("limit"))?;
        let after = self.cursor_key.from_query(me, &values("cursor"))?;
        let read = self
            .users
            .referrals_page(me, Order::NewestFirst, after.as_ref(), size.to_read())
            .await?;
        let (page, more) = size.split(read);
        let next_cursor = match page.last() {
            Some(last) if more => Some(self.cursor_key.seal(me, &last.position())),
            _ => None,
        };
        let referrals = page
            .into_iter()
            .map(|r| ReferralView {
                phone: r.phone,
                joined_at: r.referred_at,
            })
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &ReferralPage {
                referrals,
                next_cursor,
            },
        ))
    }
}

impl Endpoint for ListReferrals {
    const NAME: &str = "list-referrals";
    const METHOD: Method = Method::GET;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(ListReferrals {
            users: UserTable::new(aws_sdk_dynamodb::Client::new(aws), config.users_table()?),
            verifier: config.token_verifier()?,
            cursor_key: config.cursor_key()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.list(request).await
    }
}
