//! The sample events under `events/` (for `sam local invoke -e` and
//! `cargo lambda invoke --data-file`) are fed to their function's handler here,
//! so they can never rot.
//!
//! Each file is an API Gateway HTTP API (payload 2.0) event, read exactly as
//! the Lambda runtime reads it (`LambdaRequest`), and served by
//! `endpoints::serve` of the function its folder names, against DynamoDB Local
//! and moto's SNS (started by `make test`). Its name states the answer:
//! `events/<function>/<status>-<error code or "ok">[-<note>].json`.
//!
//! Before every event the same small world is written to the tables (phones
//! +79990000101..110, see `World`), so events do not depend on each other or
//! on earlier runs. Tokens cannot be stored in the files (they expire and are
//! signed by a per-run key), so files hold placeholders replaced here:
//! `{{ACCESS_TOKEN:<phone>}}` (of the phone's world session),
//! `{{REFRESH_TOKEN:<phone>}}` (its session's current one),
//! `{{OLD_REFRESH_TOKEN:<phone>}}` (its session's previous generation, rotated
//! out an hour ago), `{{SESSION_ID:<phone>}}` and
//! `{{EXPIRED_ACCESS_TOKEN:<phone>}}` (docs/deploy.md shows how to fill them
//! in for `sam local invoke`). Each world user has one session; REFERRED's is
//! revoked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::Method;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use phone_auth::adapters::dynamo::{OtpTable, SessionTable, UserTable};
use phone_auth::config::Config;
use phone_auth::endpoints::{
    ClientProfile, DeleteAccount, Docs, Endpoint, GetCode, Jwks, ListReferrals, ListSessions,
    Login, Logout, LogoutAll, Refresh, Register, Retrieve, RevokeSession, SendCode, SetReferrer,
    UpdateClientProfile, Web, aws_config, serve,
};
use phone_auth::invite::InviteCode;
use phone_auth::otp::{CodeHasher, PendingCode};
use phone_auth::phone::Phone;
use phone_auth::session::{RefreshKey, Session, SessionId};
use phone_auth::store::{NewUser, OtpStore, SessionStore, User, UserStore};
use phone_auth::token::{TokenKind, TokenSigner};
use phone_auth::user::UserId;
use rand::RngExt;
use serde_json::Value;

/// The one-time code seeded for the phones that have a pending code.
const SEEDED_CODE: &str = "1234";

/// The world every event runs in. Each role has its own phone.
struct World;

impl World {
    /// get-code 200: no code pending, no user.
    const FRESH: &str = "+79990000101";
    /// get-code 429: a code was sent a moment ago.
    const COOLING_DOWN: &str = "+79990000102";
    /// send-code 200: code 1234 pending, no user yet.
    const SIGNING_IN: &str = "+79990000103";
    /// send-code 400: code 1234 pending (the event sends another).
    const WRONG_CODE: &str = "+79990000104";
    /// A user with invite code EvtRf5 who referred REFERRED.
    const REFERRER: (&str, &str) = ("+79990000105", "EvtRf5");
    /// A user with invite code EvtNw6 and no referrer.
    const NEWCOMER: (&str, &str) = ("+79990000106", "EvtNw6");
    /// A user with invite code EvtRd7, referred by REFERRER.
    const REFERRED: (&str, &str) = ("+79990000107", "EvtRd7");
    /// No user, no code.
    const NOBODY: &str = "+79990000108";
    /// get-code 200 through a second code in an open send window: the first
    /// was sent two minutes ago.
    const RESENDING: &str = "+79990000109";
    /// get-code 429 too_many_codes: five codes sent in the last hour.
    const WINDOW_FULL: &str = "+79990000110";
    /// get-code and send-code 429 phone_locked: OTP_MAX_FAILED_CHECKS (3
    /// here) wrong checks today.
    const LOCKED: &str = "+79990000111";
    /// A user with invite code EvtDl8 whose account the delete-account event deletes.
    const DELETING: (&str, &str) = ("+79990000112", "EvtDl8");
    /// login 200 (step 2): a user with invite code EvtLg9 and code 1234 pending.
    const LOGGING_IN: (&str, &str) = ("+79990000113", "EvtLg9");

    fn phones() -> [&'static str; 13] {
        [
            Self::FRESH,
            Self::COOLING_DOWN,
            Self::SIGNING_IN,
            Self::WRONG_CODE,
            Self::REFERRER.0,
            Self::NEWCOMER.0,
            Self::REFERRED.0,
            Self::NOBODY,
            Self::RESENDING,
            Self::WINDOW_FULL,
            Self::LOCKED,
            Self::DELETING.0,
            Self::LOGGING_IN.0,
        ]
    }

    fn users() -> [(&'static str, &'static str); 5] {
        [
            Self::REFERRER,
            Self::NEWCOMER,
            Self::REFERRED,
            Self::DELETING,
            Self::LOGGING_IN,
        ]
    }

    /// The world session of a user: a fixed id per phone (its last three digits).
    fn session_id(phone: &str) -> SessionId {
        let id = format!("EvtSessionOfUser{}AAA", &phone[phone.len() - 3..]);
        SessionId::parse(&id).expect("world session ids are canonical")
    }

    /// The id of a world user (or, for a phone without one, of nobody): the
    /// phone's digits, so that tokens and items are the same every run.
    fn user_id(phone: &str) -> UserId {
        UserId::new(phone[1..].parse().expect("world phones are digits"))
            .expect("world phones' digits are below 2^53")
    }

    /// The generation each world session is at (refreshed twice: 3).
    const SESSION_GENERATION: u64 = 3;
}

/// `map_err` for a DynamoDB call of the test itself.
fn failed<E: std::fmt::Debug>(what: String) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e:?}")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the local DynamoDB tables and moto that \
             `make test` starts (scripts/test.sh)"
        )
    })
}

struct Harness {
    config: Config,
    signer: TokenSigner,
    hasher: CodeHasher,
    dynamo: aws_sdk_dynamodb::Client,
    users_table: String,
    otps_table: String,
    otps: OtpTable,
    users: UserTable,
    sessions: SessionTable,
    sessions_table: String,
    refresh_key: RefreshKey,
    get_code: GetCode,
    send_code: SendCode,
    refresh: Refresh,
    retrieve: Retrieve,
    set_referrer: SetReferrer,
    jwks: Jwks,
    logout: Logout,
    logout_all: LogoutAll,
    list_sessions: ListSessions,
    revoke_session: RevokeSession,
    delete_account: DeleteAccount,
    register: Register,
    login: Login,
    client_profile: ClientProfile,
    update_client_profile: UpdateClientProfile,
    list_referrals: ListReferrals,
    web: Web,
    docs: Docs,
}

impl Harness {
    async fn new() -> Self {
        let (private, public) = phone_auth::token::generate_key_pair();
        let hmac = format!("events-test-{:032x}", rand::rng().random::<u128>());
        let users_table = env("USERS_TABLE");
        let otps_table = env("OTPS_TABLE");
        let sessions_table = env("SESSIONS_TABLE");
        let vars: HashMap<&str, String> = HashMap::from([
            ("USERS_TABLE", users_table.clone()),
            ("OTPS_TABLE", otps_table.clone()),
            ("SESSIONS_TABLE", sessions_table.clone()),
            (
                "REFRESH_TOKEN_KEY",
                format!("events-refresh-{:032x}", rand::rng().random::<u128>()),
            ),
            (
                "CURSOR_KEY",
                format!("events-cursor-{:032x}", rand::rng().random::<u128>()),
            ),
            ("TOKEN_PRIVATE_KEY", private),
            ("TOKEN_PUBLIC_KEY", public),
            ("OTP_HMAC_KEY", hmac),
            // The deployed sender; moto receives the SMS.
            ("SMS_PROVIDER", "sns".to_string()),
            ("PHONE_DEFAULT_REGION", "RU".to_string()),
            // One code's attempts lock a phone, so LOCKED needs one code only.
            ("OTP_MAX_FAILED_CHECKS", "3".to_string()),
        ]);
        let config = Config::from_lookup(move |name| vars.get(name).cloned());

        env("AWS_ENDPOINT_URL_DYNAMODB");
        // DynamoDB keeps its service-specific endpoint from the environment
        // (AWS_ENDPOINT_URL_DYNAMODB); every other service, here SNS, goes to moto.
        let aws = aws_config(&Config::from_env())
            .expect("AWS_REGION is set")
            .into_builder()
            .endpoint_url(env("MOTO_ENDPOINT"))
            .build();

        let built = |what: &str, err: phone_auth::config::ConfigError| -> ! {
            panic!("building {what} from the test configuration: {err}")
        };
        let dynamo = aws_sdk_dynamodb::Client::new(&aws);
        Harness {
            signer: config.token_signer().unwrap_or_else(|e| built("signer", e)),
            hasher: CodeHasher::new(&config.otp_hmac_key().unwrap_or_else(|e| built("hasher", e))),
            otps: OtpTable::new(dynamo.clone(), otps_table.clone()),
            users: UserTable::new(dynamo.clone(), users_table.clone()),
            sessions: SessionTable::new(dynamo.clone(), sessions_table.clone()),
            sessions_table,
            refresh_key: config
                .refresh_key()
                .unwrap_or_else(|e| built("refresh key", e)),
            get_code: GetCode::from_config(&config, &aws).unwrap_or_else(|e| built("get-code", e)),
            send_code: SendCode::from_config(&config, &aws)
                .unwrap_or_else(|e| built("send-code", e)),
            refresh: Refresh::from_config(&config, &aws).unwrap_or_else(|e| built("refresh", e)),
            retrieve: Retrieve::from_config(&config, &aws).unwrap_or_else(|e| built("retrieve", e)),
            set_referrer: SetReferrer::from_config(&config, &aws)
                .unwrap_or_else(|e| built("set-referrer", e)),
            jwks: Jwks::from_config(&config, &aws).unwrap_or_else(|e| built("jwks", e)),
            docs: Docs::from_config(&config, &aws).unwrap_or_else(|e| built("docs", e)),
            logout: Logout::from_config(&config, &aws).unwrap_or_else(|e| built("logout", e)),
            logout_all: LogoutAll::from_config(&config, &aws)
                .unwrap_or_else(|e| built("logout-all", e)),
            list_sessions: ListSessions::from_config(&config, &aws)
                .unwrap_or_else(|e| built("list-sessions", e)),
            revoke_session: RevokeSession::from_config(&config, &aws)
                .unwrap_or_else(|e| built("revoke-session", e)),
            delete_account: DeleteAccount::from_config(&config, &aws)
                .unwrap_or_else(|e| built("delete-account", e)),
            register: Register::from_config(&config, &aws).unwrap_or_else(|e| built("register", e)),
            login: Login::from_config(&config, &aws).unwrap_or_else(|e| built("login", e)),
            client_profile: ClientProfile::from_config(&config, &aws)
                .unwrap_or_else(|e| built("client-profile", e)),
            update_client_profile: UpdateClientProfile::from_config(&config, &aws)
                .unwrap_or_else(|e| built("update-client-profile", e)),
            list_referrals: ListReferrals::from_config(&config, &aws)
                .unwrap_or_else(|e| built("list-referrals", e)),
            web: Web::from_config(&config, &aws).unwrap_or_else(|e| built("web", e)),
            config,
            dynamo,
            users_table,
            otps_table,
        }
    }

    fn token(&self, phone: &str, kind: TokenKind, now: u64) -> String {
        self.signer.issue(&World::user_id(phone), kind, now)
    }

    /// An access token of the phone's world session.
    fn access_token(&self, phone: &str, now: u64) -> String {
        self.signer
            .issue_access(&World::user_id(phone), &World::session_id(phone), now)
    }

    /// Removes every trace of the world's phones, then writes the world again.
    async fn reset_world(&self) -> Result<(), String> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        for phone in World::phones() {
            self.dynamo
                .delete_item()
                .table_name(&self.otps_table)
                .key("phone", s(phone))
                .send()
                .await
                .map_err(failed(format!("deleting the code of {phone}")))?;
            // The phone's user: a world user (id from the phone), or one an
            // earlier send-code event created (a random id and invite code).
            let claim = self
                .dynamo
                .get_item()
                .table_name(&self.users_table)
                .key("pk", s(&format!("PHONE#{phone}")))
                .consistent_read(true)
                .send()
                .await
                .map_err(failed(format!("reading the claim of {phone}")))?;
            let mut keys = vec![
                format!("PHONE#{phone}"),
                format!("USER#{}", World::user_id(phone)),
            ];
            if let Some(AttributeValue::N(id)) = claim.item().and_then(|i| i.get("user_id")) {
                let user = self
                    .dynamo
                    .get_item()
                    .table_name(&self.users_table)
                    .key("pk", s(&format!("USER#{id}")))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(failed(format!("reading user {id}")))?;
                if let Some(AttributeValue::S(code)) =
                    user.item().and_then(|i| i.get("invite_code"))
                {
                    keys.push(format!("INVITE#{code}"));
                }
                keys.push(format!("USER#{id}"));
            }
            for key in keys {
                self.dynamo
                    .delete_item()
                    .table_name(&self.users_table)
                    .key("pk", s(&key))
                    .send()
                    .await
                    .map_err(failed(format!("deleting {key}")))?;
            }
        }
        for (_, code) in World::users() {
            self.dynamo
                .delete_item()
                .table_name(&self.users_table)
                .key("pk", s(&format!("INVITE#{code}")))
                .send()
                .await
                .map_err(failed(format!("deleting the claim of {code}")))?;
        }

        let now = phone_auth::http::now();
        let policy = self.config.otp_policy().map_err(|e| e.to_string())?;
        // (phone, when its codes were sent): each send through the store, as get-code does.
        let sends: [(&str, &[u64]); 7] = [
            (World::LOCKED, &[now]),
            (World::LOGGING_IN.0, &[now]),
            (World::COOLING_DOWN, &[now]),
            (World::SIGNING_IN, &[now]),
            (World::WRONG_CODE, &[now]),
            (World::RESENDING, &[now - 120]),
            (
                World::WINDOW_FULL,
                &[now - 3000, now - 2900, now - 2800, now - 2700, now - 2600],
            ),
        ];
        for (phone, times) in sends {
            let phone = parse_phone(phone);
            for &at in times {
                let hash = self.hasher.hash(&phone, SEEDED_CODE);
                let pending = PendingCode::new(phone.clone(), hash, at, &policy);
                let refused = self
                    .otps
                    .issue(&pending, &policy, at)
                    .await
                    .map_err(|e| e.to_string())?;
                if refused.is_some() {
                    return Err(format!("could not seed the codes of {phone}"));
                }
            }
        }
        let locked = parse_phone(World::LOCKED);
        for _ in 0..policy.max_failed_checks {
            self.otps
                .count_attempt(&locked, &policy, now)
                .await
                .map_err(|e| e.to_string())?;
        }
        for (phone, code) in World::users() {
            let user = User {
                id: World::user_id(phone),
                phone: parse_phone(phone),
                invite_code: InviteCode::parse(code).expect("world invite codes are well formed"),
                referrer: None,
                created_at: now,
                referrals_count: 0,
            };
            match self.users.create(&user).await.map_err(|e| e.to_string())? {
                NewUser::Created(_) => {}
                other => return Err(format!("could not seed user {phone}: {other:?}")),
            }
        }
        // One session per world user, refreshed twice an hour ago; REFERRED's revoked.
        let policy = self.config.session_policy().map_err(|e| e.to_string())?;
        for (phone, _) in World::users() {
            let sid = World::session_id(phone);
            self.dynamo
                .delete_item()
                .table_name(&self.sessions_table)
                .key("sid", s(sid.as_str()))
                .send()
                .await
                .map_err(failed(format!("deleting the session of {phone}")))?;
            let started = policy.start(
                World::user_id(phone),
                phone_auth::session::ClientInfo::new(Some("curl/8.5.0"), Some("203.0.113.10")),
                now - 7200,
            );
            let session = Session {
                sid,
                generation: World::SESSION_GENERATION,
                rotated_at: now - 3600,
                last_used_at: now - 3600,
                revoked_at: (phone == World::REFERRED.0).then_some(now - 60),
                ..started
            };
            if !self
                .sessions
                .create(&session)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("could not seed the session of {phone}"));
            }
        }
        // REFERRED names REFERRER through the endpoint itself, as a client would.
        let mut request = Request::new(Body::from(format!(
            r#"{{"invite_code": "{}"}}"#,
            World::REFERRER.1
        )));
        *request.method_mut() = Method::POST;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.access_token(World::REFERRED.0, now))
                .parse()
                .expect("token is a valid header value"),
        );
        let response = serve(&self.set_referrer, request).await;
        if response.status() != 200 {
            return Err(format!(
                "could not seed the referral: {} {:?}",
                response.status(),
                response.body()
            ));
        }
        Ok(())
    }

    /// Replaces the token placeholders of an event file.
    fn fill_placeholders(&self, text: &str) -> Result<String, String> {
        let now = phone_auth::http::now();
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .ok_or("unterminated {{ placeholder")?
                + start;
            let placeholder = &rest[start + 2..end];
            let (name, phone) = placeholder
                .split_once(':')
                .ok_or_else(|| format!("placeholder {{{{{placeholder}}}}} names no phone"))?;
            out.push_str(&match name {
                "ACCESS_TOKEN" => self.access_token(phone, now),
                "REFRESH_TOKEN" => self
                    .refresh_key
                    .token(&World::session_id(phone), World::SESSION_GENERATION),
                "OLD_REFRESH_TOKEN" => self
                    .refresh_key
                    .token(&World::session_id(phone), World::SESSION_GENERATION - 1),
                "SESSION_ID" => World::session_id(phone).as_str().to_string(),
                // A refresh JWT as minted before sessions: never an access token.
                "LEGACY_REFRESH_JWT" => self.token(phone, TokenKind::Refresh, now),
                // Issued a day ago: long past any access token lifetime and clock leeway.
                "EXPIRED_ACCESS_TOKEN" => self.token(phone, TokenKind::Access, now - 86_400),
                other => return Err(format!("unknown placeholder {other}")),
            });
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    async fn serve(&self, function: &str, request: Request) -> Result<(u16, Value), String> {
        let response = match function {
            "get-code" => serve(&self.get_code, request).await,
            "send-code" => serve(&self.send_code, request).await,
            "refresh" => serve(&self.refresh, request).await,
            "retrieve" => serve(&self.retrieve, request).await,
            "set-referrer" => serve(&self.set_referrer, request).await,
            "jwks" => serve(&self.jwks, request).await,
            "logout" => serve(&self.logout, request).await,
            "logout-all" => serve(&self.logout_all, request).await,
            "list-sessions" => serve(&self.list_sessions, request).await,
            "revoke-session" => serve(&self.revoke_session, request).await,
            "delete-account" => serve(&self.delete_account, request).await,
            "register" => serve(&self.register, request).await,
            "login" => serve(&self.login, request).await,
            "client-profile" => serve(&self.client_profile, request).await,
            "update-client-profile" => serve(&self.update_client_profile, request).await,
            "list-referrals" => serve(&self.list_referrals, request).await,
            "web" => serve(&self.web, request).await,
            "docs" => serve(&self.docs, request).await,
            other => return Err(format!("events/{other}/ is not a function of this service")),
        };
        let status = response.status().as_u16();
        // 204 answers nothing.
        if status == 204 && response.body().is_empty() {
            return Ok((status, Value::Null));
        }
        // The web page's and the docs' pages and files are the only answers
        // that are not JSON (their errors are).
        let json = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
        if matches!(function, "web" | "docs") && !json {
            return Ok((status, Value::Null));
        }
        let body = serde_json::from_slice(response.body().as_ref())
            .map_err(|e| format!("answer {status} is not JSON: {e}"))?;
        Ok((status, body))
    }

    async fn run(&self, file: &Path) -> Result<(), String> {
        let function = file
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .ok_or("not in a function folder")?;
        let expected = Expectation::from_file_name(file)?;
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;

        let raw: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
        if raw["version"] != "2.0" {
            return Err("not a payload 2.0 event (\"version\": \"2.0\")".into());
        }
        // Placeholders are filled in as text, so none may hide in a base64 body.
        if raw["isBase64Encoded"] == true {
            use base64::Engine;
            let body = raw["body"].as_str().unwrap_or_default();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| format!("body is not base64: {e}"))?;
            if String::from_utf8_lossy(&decoded).contains("{{") {
                return Err("a base64 body cannot hold placeholders".into());
            }
        }

        let filled = self.fill_placeholders(&text)?;
        let event: LambdaRequest = serde_json::from_str(&filled)
            .map_err(|e| format!("the Lambda runtime would refuse it: {e}"))?;
        if !matches!(event, LambdaRequest::ApiGatewayV2(_)) {
            return Err("not read as an HTTP API (payload 2.0) event".into());
        }
        let request = Request::from(event);

        self.reset_world().await?;
        let (status, body) = self.serve(function, request).await?;
        let code = body.get("code").and_then(Value::as_str);
        match (&expected, code) {
            (Expectation::Ok(want), None) if status == *want => Ok(()),
            (Expectation::Error(want, want_code), Some(code))
                if status == *want && code == want_code =>
            {
                Ok(())
            }
            _ => Err(format!("expected {expected:?}, got {status} {body}")),
        }
    }
}

#[derive(Debug)]
enum Expectation {
    Ok(u16),
    Error(u16, String),
}

impl Expectation {
    /// `200-ok-note.json` → Ok(200); `409-already_referred-note.json` → Error(409, "already_referred").
    fn from_file_name(file: &Path) -> Result<Self, String> {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let mut parts = stem.split('-');
        let bad = || format!("file name {stem:?} is not <status>-<error code or ok>[-<note>]");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let code = parts.next().filter(|c| !c.is_empty()).ok_or_else(bad)?;
        match (status, code) {
            (200..=299, "ok") => Ok(Expectation::Ok(status)),
            (400..=599, code) if code != "ok" => Ok(Expectation::Error(status, code.to_string())),
            _ => Err(bad()),
        }
    }
}

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn event_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![events_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("readable directory entry").path();
            // publish-events' sample is a stream batch, not an API
            // Gateway request: its own tests read it (publish_events.rs).
            if path.ends_with("publish-events") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn every_event_gets_the_answer_its_file_name_states() {
    let files = event_files();
    let harness = Harness::new().await;
    let mut failures = Vec::new();
    for file in &files {
        let name = file.strip_prefix(events_dir()).unwrap_or(file).display();
        if file.extension().and_then(|e| e.to_str()) != Some("json") {
            failures.push(format!("{name}: only .json events belong under events/"));
            continue;
        }
        if let Err(err) = harness.run(file).await {
            failures.push(format!("{name}: {err}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} events failed:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
    // Every function behind a route has samples of both kinds: routes.rs
    // checks it against its one list of the functions.
}

#[test]
fn file_names_state_status_and_code() {
    let parse = |name: &str| Expectation::from_file_name(Path::new(name));
    assert!(matches!(parse("200-ok.json"), Ok(Expectation::Ok(200))));
    assert!(matches!(
        parse("200-ok-new-user.json"),
        Ok(Expectation::Ok(200))
    ));
    assert!(
        matches!(parse("409-already_referred-again.json"), Ok(Expectation::Error(409, c)) if c == "already_referred")
    );
    for bad in [
        "ok.json",
        "200.json",
        "200-oops.json",
        "400-ok.json",
        "abc-ok.json",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

/// A world phone as the API would accept it.
fn parse_phone(e164: &str) -> Phone {
    let any_region = phone_auth::phone::PhonePolicy {
        default_region: phone_auth::phone::Region::RU,
        allowed_regions: vec![],
    };
    Phone::parse(e164, &any_region).unwrap_or_else(|e| panic!("world phone {e164}: {e}"))
}
