//! `POST /users/auth/send_code/` `{"phone", "password"}` → checks the code,
//! creates the user on first sign-in, starts a session, returns
//! `{"access", "refresh"}`.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::Endpoint;
use super::refresh::TokenPair;
use crate::adapters::dynamo::{OtpTable, SessionTable, UserTable};
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::{client_info, json_body, now, source_ip};
use crate::invite::InviteCode;
use crate::limits::{CheckLimit, Source};
use crate::observe::{self, Fact};
use crate::otp::{Attempt, CodeHasher, OtpPolicy, PendingCode};
use crate::phone::{Phone, PhonePolicy};
use crate::session::{ClientInfo, RefreshKey, SessionPolicy};
use crate::store::{CounterStore, NewUser, OtpStore, SessionStore, User, UserStore};
use crate::token::TokenSigner;
use crate::user::UserId;

/// Invite-code collisions are rare (62^6 codes), id collisions rarer (2^53):
/// a few fresh draws always suffice.
const MAX_CREATE_TRIES: usize = 5;

pub struct SendCode<O = OtpTable, U = UserTable, S = SessionTable, C = OtpTable> {
    pub otps: O,
    pub users: U,
    pub sessions: S,
    /// The count of codes checked per source (in the codes table, deployed).
    pub counters: C,
    pub check_limit: CheckLimit,
    /// Where new users' invite codes come from: `InviteCode::generate`. Tests
    /// give a tiny pool here, so that uniqueness visibly rests on storage's
    /// conditional write (62^6 random codes would never collide in a test).
    pub invite_codes: fn() -> InviteCode,
    pub hasher: CodeHasher,
    pub signer: TokenSigner,
    pub refresh_key: RefreshKey,
    pub session_policy: SessionPolicy,
    pub otp_policy: OtpPolicy,
    pub phone_policy: PhonePolicy,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct SendCodeRequest {
    /// As sent to get_code, in any spelling it accepts.
    phone: String,
    /// The SMS code (`OTP_LENGTH` digits, 4 by default); seed-004 clients
    /// call it `sms_code`.
    #[serde(alias = "sms_code", alias = "code")]
    password: String,
}

/// A fresh session id never collides (128 random bits); a refused create is
/// tried again with another, a bounded number of times.
const MAX_SESSION_TRIES: usize = 3;

/// What is known of a phone's account before its code is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KnownAccount {
    /// Nothing: look it up (and create it if there is none).
    Unknown,
    /// This user's: just read.
    Of(UserId),
    /// None: just read, so create it without reading again.
    Absent,
}

/// A signed-in user and their new session's tokens.
pub(crate) struct SignedIn {
    pub user: UserId,
    /// The user, when this sign-in created them.
    pub created: Option<User>,
    pub tokens: TokenPair,
}

impl<O: OtpStore, U: UserStore, S: SessionStore, C: CounterStore> SendCode<O, U, S, C> {
    /// The request over any ports: what `handle` runs in the function, and
    /// what tests run over in-memory or scripted ones.
    pub async fn sign_in(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let body: SendCodeRequest = json_body(&request)?;
        let phone = Phone::parse(&body.phone, &self.phone_policy)?;
        observe::phone(&phone);
        let signed_in = self
            .sign_in_with(
                &phone,
                &body.password,
                source_ip(&request),
                client_info(&request),
                KnownAccount::Unknown,
            )
            .await?;
        Ok(json_response(StatusCode::OK, &signed_in.tokens))
    }

    /// Checks `code` for `phone`, creates the user on first sign-in, starts
    /// a session: send_code after reading its request, and step 2 of
    /// seed-004's register and login.
    pub(crate) async fn sign_in_with(
        &self,
        phone: &Phone,
        code: &str,
        source: Option<&str>,
        client: ClientInfo,
        account: KnownAccount,
    ) -> Result<SignedIn, ApiError> {
        let code = code.trim();
        if !self.otp_policy.is_well_formed(code) {
            return Err(ApiError::MalformedCode {
                length: self.otp_policy.length,
            });
        }
        let now = now();

        // The source's hourly checks first, and alone: a check it refuses
        // touches nothing of the phone's (attempts, failed checks), so a
        // network past its limit cannot lock anybody's phone either.
        let checks = self.check_limit.counter(Source::from_text(source), now);
        if !self.counters.take(&checks).await? {
            return Err(checks.refusal(now).into());
        }

        // Count the attempt (and, until it signs in, a failed check of the
        // phone) before comparing, so parallel guesses cannot exceed the limits.
        let pending = match self
            .otps
            .count_attempt(phone, &self.otp_policy, now)
            .await?
        {
            Attempt::Counted(pending) => pending,
            Attempt::NoCode => return Err(ApiError::CodeInvalid),
            Attempt::Expired => return Err(ApiError::CodeExpired),
            Attempt::Exhausted => return Err(ApiError::TooManyAttempts),
            Attempt::Locked { retry_after } => return Err(ApiError::PhoneLocked { retry_after }),
        };
        if !self.hasher.matches(phone, code, &pending.code_hash) {
            return Err(ApiError::CodeInvalid);
        }
        let (user, created) = match self.use_code(phone, &pending, account, now).await {
            Ok(used) => used,
            Err(ApiError::Unavailable) => {
                // The right code, and storage failed before it was used: its
                // check is given back, so that a person retrying through an
                // outage neither spends the code's attempts nor locks the
                // phone. If that fails too, the check stays counted.
                let given_back = self
                    .otps
                    .give_back_attempt(&pending, &self.otp_policy, now)
                    .await;
                if let Err(err) = given_back {
                    tracing::error!(error = %err, "could not give back a right code's check");
                }
                return Err(ApiError::Unavailable);
            }
            Err(refused) => return Err(refused),
        };
        // The session last, once the code is used: if this write fails
        // (503), no session exists that nobody holds a token of; the code is
        // spent, and the client asks for a new one.
        for _ in 0..MAX_SESSION_TRIES {
            let session = self.session_policy.start(user, client.clone(), now);
            if self.sessions.create(&session).await? {
                let tokens = TokenPair::of(&session, &self.signer, &self.refresh_key, now);
                observe::user(user);
                observe::note(Fact::SignedIn);
                if created.is_some() {
                    observe::note(Fact::SignedUp);
                }
                return Ok(SignedIn {
                    user,
                    created,
                    tokens,
                });
            }
        }
        tracing::error!("could not store a session after {MAX_SESSION_TRIES} tries");
        Err(ApiError::Unavailable)
    }

    /// The user first: if that fails (503), the code is still there and the
    /// same code can be tried again. Creating the user twice is harmless
    /// (the second sign-in finds it). Then the code, once: of two parallel
    /// correct submissions only one uses it, and only its check stops
    /// counting as failed.
    async fn use_code(
        &self,
        phone: &Phone,
        pending: &PendingCode,
        account: KnownAccount,
        now: u64,
    ) -> Result<(UserId, Option<User>), ApiError> {
        let (user, created) = self.ensure_user(phone, account, now).await?;
        if !self
            .otps
            .consume(phone, &pending.code_hash, &self.otp_policy, now)
            .await?
        {
            return Err(ApiError::CodeInvalid);
        }
        Ok((user, created))
    }

    /// The id of `phone`'s user, created with a fresh id and a fresh unique
    /// invite code on first sign-in (then the new user too).
    async fn ensure_user(
        &self,
        phone: &Phone,
        account: KnownAccount,
        now: u64,
    ) -> Result<(UserId, Option<User>), ApiError> {
        let mut look_up = match account {
            KnownAccount::Of(id) => return Ok((id, None)),
            KnownAccount::Unknown => true,
            KnownAccount::Absent => false,
        };
        for _ in 0..MAX_CREATE_TRIES {
            if look_up && let Some(id) = self.users.id_of(phone).await? {
                return Ok((id, None));
            }
            look_up = true;
            let user = User {
                id: UserId::generate(),
                phone: phone.clone(),
                invite_code: (self.invite_codes)(),
                referrer: None,
                created_at: now,
                referrals_count: 0,
            };
            match self.users.create(&user).await? {
                NewUser::Created(user) => return Ok((user.id, Some(user))),
                // Someone else's phone claim: look it up again. A taken id
                // or code: draw again.
                NewUser::PhoneTaken | NewUser::IdTaken | NewUser::InviteCodeTaken => continue,
            }
        }
        tracing::error!("could not create a user after {MAX_CREATE_TRIES} tries");
        Err(ApiError::Unavailable)
    }
}

impl Endpoint for SendCode {
    const NAME: &str = "send-code";
    const METHOD: Method = Method::POST;
    const READS_PHONES: bool = true;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(SendCode {
            otps: OtpTable::new(dynamo.clone(), config.otps_table()?),
            users: UserTable::new(dynamo.clone(), config.users_table()?),
            sessions: SessionTable::new(dynamo.clone(), config.sessions_table()?),
            counters: OtpTable::new(dynamo, config.otps_table()?),
            check_limit: config.check_limit()?,
            invite_codes: InviteCode::generate,
            hasher: CodeHasher::new(&config.otp_hmac_key()?),
            signer: config.token_signer()?,
            refresh_key: config.refresh_key()?,
            session_policy: config.session_policy()?,
            otp_policy: config.otp_policy()?,
            phone_policy: config.phone_policy()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.sign_in(request).await
    }
}
