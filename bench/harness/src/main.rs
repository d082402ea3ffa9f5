//! `make bench`: runs the release `bootstrap` of every function under a
//! loopback Lambda Runtime API, side by side with an empty `lambda_http`
//! function built the same way, against DynamoDB Local and an SNS stub.
//!
//! Phases: cold starts (alternating with the baseline), warm latency (one
//! process per function, many invocations), DynamoDB requests per flow (through
//! the DynamoDB recorder), concurrent joins into one referral tree (joins.rs), the
//! stream consumer over the users table's stream (stream.rs), the DynamoDB
//! Local round trip, and binary/zip sizes.
//! It prints a table and writes `summary.json`; it asserts no timing.
//!
//! `bench record LISTEN UPSTREAM FILE` runs only the DynamoDB recorder
//! (recorder.rs) on `LISTEN`, in front of DynamoDB Local at `UPSTREAM` (both
//! `host:port`), writing what each function asked for to `FILE` until it is
//! stopped: scripts/test.sh puts it between the end-to-end run and DynamoDB Local.
//!
//! Configuration comes from the environment (scripts/bench.sh sets it):
//! `BENCH_LAMBDA_DIR` (x86_64 `<function>/bootstrap[.zip]`, run here),
//! `BENCH_ARM64_DIR` (optional, sizes only), `BENCH_OUT`, `BENCH_DYNAMODB`
//! (`host:port` of DynamoDB Local), `BENCH_BUILD` (JSON describing the build),
//! `BENCH_COLD_RUNS`, `BENCH_WARM_INVOCATIONS`, `BENCH_SNS_PORT` (where the SNS
//! stub listens), optionally `BENCH_DYNAMODB_TLS` and `BENCH_SNS_TLS` (`https://`
//! endpoints in front of DynamoDB Local and of the SNS stub) with `BENCH_TLS_CA`
//! (their CA certificate, given to the functions as `SSL_CERT_FILE`), and the functions' own
//! `USERS_TABLE`, `OTPS_TABLE`, `SESSIONS_TABLE`, `OTP_HMAC_KEY`, `REFRESH_TOKEN_KEY`,
//! `CURSOR_KEY`, `TOKEN_PRIVATE_KEY`, `TOKEN_PUBLIC_KEY`.

mod cpu_share;
mod events;
mod http1;
mod joins;
mod recorder;
mod report;
mod runtime;
mod stream;
mod stubs;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use cpu_share::CpuShare;
use recorder::{DynamoProxy, Tally};
use report::{ColdSample, Flow, Results, Warm};
use runtime::Function;
use stubs::SnsStub;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// In the order the warm phase runs them: list-sessions gives revoke-session
/// its session ids, login (seed-004) asks codes for the warm phase's users,
/// and delete-account, last, deletes them.
pub const FUNCTIONS: [&str; 18] = [
    "get-code",
    "send-code",
    "refresh",
    "retrieve",
    "set-referrer",
    "jwks",
    "web",
    "docs",
    "logout",
    "logout-all",
    "list-sessions",
    "revoke-session",
    "register",
    "login",
    "client-profile",
    "update-client-profile",
    "list-referrals",
    "delete-account",
];
pub const BASELINE: &str = "baseline";

/// Every function measured: the HTTP ones, then the stream consumer.
pub fn measured() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.into_iter().chain([stream::NAME])
}

fn env(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run `make bench`)").into())
}

fn env_number(name: &str, default: usize) -> Res<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number").into()),
    }
}

struct Settings {
    lambda_dir: PathBuf,
    arm64_dir: Option<PathBuf>,
    out: PathBuf,
    dynamodb: SocketAddr,
    cold_runs: usize,
    warm_invocations: usize,
    /// Environment every function process gets, less the DynamoDB endpoint.
    base_env: Vec<(String, String)>,
    build: Value,
    /// Where the SNS stub listens (0: any free port); scripts/bench.sh
    /// chooses it, so that its TLS proxy can stand in front.
    sns_port: u16,
    /// DynamoDB Local and the SNS stub behind TLS, for the first-connection
    /// cost that AWS has and loopback HTTP has not.
    tls: Option<Tls>,
    /// `BENCH_CPU_PERIOD_US`: the period of the 128 MB round's CPU share.
    cpu_period_us: u64,
}

struct Tls {
    dynamodb: String,
    sns: String,
    ca_file: String,
}

impl Settings {
    fn from_env() -> Res<Settings> {
        let mut base_env: Vec<(String, String)> = [
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_rust"),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
            ("_HANDLER", "bootstrap"),
            ("LANG", "en_US.UTF-8"),
            ("TZ", ":UTC"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            ("AWS_SESSION_TOKEN", "local"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("SMS_PROVIDER", "sns"),
            ("PHONE_DEFAULT_REGION", "RU"),
            ("TOKEN_ISSUER", "phone-auth-bench"),
            ("TOKEN_AUDIENCE", "phone-auth-bench"),
            // Long enough for the whole run; the default 15 minutes may not be.
            ("ACCESS_TOKEN_TTL_SECONDS", "7200"),
            // Every abuse budget on (each is a counter get_code updates), with
            // room for the whole run: the figures include their cost.
            ("SMS_DAILY_BUDGET", "10000000"),
            ("SMS_DAILY_BUDGET_BY_REGION", "RU=10000000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for name in [
            "USERS_TABLE",
            "OTPS_TABLE",
            "SESSIONS_TABLE",
            "OTP_HMAC_KEY",
            "REFRESH_TOKEN_KEY",
            "CURSOR_KEY",
            "TOKEN_PRIVATE_KEY",
            "TOKEN_PUBLIC_KEY",
        ] {
            base_env.push((name.to_string(), env(name)?));
        }
        let dynamodb = env("BENCH_DYNAMODB")?;
        Ok(Settings {
            lambda_dir: env("BENCH_LAMBDA_DIR")?.into(),
            arm64_dir: std::env::var("BENCH_ARM64_DIR")
                .ok()
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            out: env("BENCH_OUT")?.into(),
            dynamodb: dynamodb
                .trim_start_matches("http://")
                .parse()
                .map_err(|_| format!("BENCH_DYNAMODB={dynamodb:?} is not host:port"))?,
            cold_runs: env_number("BENCH_COLD_RUNS", 20)?.max(1),
            warm_invocations: env_number("BENCH_WARM_INVOCATIONS", 1000)?.max(1),
            base_env,
            build: std::env::var("BENCH_BUILD")
                .ok()
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null),
            sns_port: env_number("BENCH_SNS_PORT", 0)?
                .try_into()
                .map_err(|_| "BENCH_SNS_PORT is not a port")?,
            tls: match (
                std::env::var("BENCH_DYNAMODB_TLS"),
                std::env::var("BENCH_SNS_TLS"),
                std::env::var("BENCH_TLS_CA"),
            ) {
                (Ok(dynamodb), Ok(sns), Ok(ca_file)) if !dynamodb.is_empty() && !sns.is_empty() => {
                    Some(Tls {
                        dynamodb,
                        sns,
                        ca_file,
                    })
                }
                _ => None,
            },
            cpu_period_us: env_number("BENCH_CPU_PERIOD_US", cpu_share::DEFAULT_PERIOD_US as usize)?
                as u64,
        })
    }

    fn binary(&self, name: &str) -> PathBuf {
        self.lambda_dir.join(name).join("bootstrap")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.out.join("logs").join(format!("{name}.log"))
    }

    fn env_with(&self, dynamodb: &str, sns: &str) -> Vec<(String, String)> {
        let mut env = self.base_env.clone();
        env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), dynamodb.to_string()));
        env.push(("AWS_ENDPOINT_URL_SNS".into(), sns.to_string()));
        env
    }
}

/// Fresh, valid Russian mobile numbers.
struct Phones(u64);

impl Phones {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("+7900{:07}", self.0)
    }
}

/// What a function answered, as the API Gateway would return it.
struct Reply {
    status: u16,
    body: Value,
}

async fn call(function: &mut Function, event: Vec<u8>) -> Res<(Duration, Reply)> {
    let outcome = function.invoke(event).await?;
    let text = String::from_utf8_lossy(&outcome.body);
    if outcome.error {
        return Err(format!("{} posted an invocation error: {text}", function.name).into());
    }
    let response: Value = serde_json::from_slice(&outcome.body)
        .map_err(|e| format!("{} answered non-JSON ({e}): {text}", function.name))?;
    let status = response["statusCode"].as_u64().unwrap_or(0) as u16;
    // No body (a 204's: absent, null or "") is Null; a body that is not JSON
    // is kept as text, so that it is neither taken for an empty one nor lost
    // from an error message.
    let body = match response["body"].as_str() {
        None | Some("") => Value::Null,
        Some(text) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        }
    };
    Ok((outcome.duration, Reply { status, body }))
}

/// `call`, requiring a 200, or a 204 without a body (the routes that answer
/// nothing: logout, logout-all, revoke-session, delete-account).
async fn call_ok(function: &mut Function, event: Vec<u8>) -> Res<(Duration, Value)> {
    let (duration, reply) = call(function, event).await?;
    let ok = match reply.status {
        200 => true,
        204 => reply.body.is_null(),
        _ => false,
    };
    if !ok {
        return Err(format!(
            "{} answered {}: {}",
            function.name, reply.status, reply.body
        )
        .into());
    }
    Ok((duration, reply.body))
}

/// `call`, requiring `status` (seed-004's register answers 201).
async fn call_status(
    function: &mut Function,
    event: Vec<u8>,
    status: u16,
) -> Res<(Duration, Value)> {
    let (duration, reply) = call(function, event).await?;
    if reply.status != status {
        return Err(format!(
            "{} answered {} (expected {status}): {}",
            function.name, reply.status, reply.body
        )
        .into());
    }
    Ok((duration, reply.body))
}

struct User {
    access: String,
    refresh: String,
}

/// One warm process of each function, used to prepare what a measurement needs.
struct Fleet {
    functions: BTreeMap<&'static str, Function>,
    sns: SnsStub,
}

impl Fleet {
    async fn start(settings: &Settings, dynamodb: &str, sns: &SnsStub, tag: &str) -> Res<Fleet> {
        let env = settings.env_with(dynamodb, &sns.endpoint());
        let mut functions = BTreeMap::new();
        for name in FUNCTIONS {
            let mut function = Function::spawn(
                name,
                &settings.binary(name),
                &env,
                &settings.log(&format!("{name}-{tag}")),
            )
            .await?;
            function.ready().await?;
            functions.insert(name, function);
        }
        Ok(Fleet {
            functions,
            sns: sns.clone(),
        })
    }

    fn get(&mut self, name: &str) -> &mut Function {
        self.functions.get_mut(name).expect("every function runs")
    }

    /// get_code, and the code the SNS stub was asked to send.
    async fn request_code(&mut self, phone: &str) -> Res<String> {
        call_ok(self.get("get-code"), events::get_code(phone)).await?;
        self.sns
            .code_for(phone)
            .ok_or_else(|| format!("no SMS was published to {phone}").into())
    }

    async fn sign_in(&mut self, phone: &str) -> Res<User> {
        let code = self.request_code(phone).await?;
        let (_, tokens) = call_ok(self.get("send-code"), events::send_code(phone, &code)).await?;
        user(&tokens)
    }

    /// One phone signed in `sessions` times (one session each, as on that
    /// many devices); the last sign-in's tokens. A code once used leaves
    /// nothing pending, so the phone's resend cooldown does not hold the next
    /// one back; its window allows 5 codes an hour.
    async fn sign_in_times(&mut self, phone: &str, sessions: usize) -> Res<User> {
        let mut user = self.sign_in(phone).await?;
        for _ in 1..sessions {
            user = self.sign_in(phone).await?;
        }
        Ok(user)
    }

    /// The id of one of the user's live sessions other than the one their
    /// access token belongs to, as list-sessions shows it.
    async fn other_session(&mut self, user: &User) -> Res<String> {
        let (_, list) = call_ok(
            self.get("list-sessions"),
            events::list_sessions(&user.access),
        )
        .await?;
        session_ids(&list, false)
            .pop()
            .ok_or_else(|| format!("no session besides the caller's: {list}").into())
    }

    /// An account as deletion usually finds one: signed in on two devices,
    /// and referred by the owner of `invite_code`.
    async fn account_to_delete(&mut self, phone: &str, invite_code: &str) -> Res<User> {
        let user = self.sign_in_times(phone, 2).await?;
        self.refer(&user, invite_code).await?;
        Ok(user)
    }

    async fn invite_code(&mut self, user: &User) -> Res<String> {
        let (_, profile) = call_ok(self.get("retrieve"), events::retrieve(&user.access)).await?;
        profile["invite_code"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("profile without invite_code: {profile}").into())
    }

    async fn refer(&mut self, user: &User, invite_code: &str) -> Res<()> {
        call_ok(
            self.get("set-referrer"),
            events::set_referrer(&user.access, invite_code),
        )
        .await?;
        Ok(())
    }

    /// The user's referrals, every page of list-referrals counted.
    async fn count_referrals(&mut self, user: &User) -> Res<usize> {
        let mut count = 0;
        let mut event = events::list_referrals(&user.access);
        loop {
            let (_, page) = call_ok(self.get("list-referrals"), event).await?;
            count += page["referrals"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(cursor) => event = events::list_referrals_after(&user.access, cursor),
                None => return Ok(count),
            }
        }
    }

    async fn stop(self) {
        for (_, function) in self.functions {
            function.stop().await;
        }
    }
}

fn user(tokens: &Value) -> Res<User> {
    match (tokens["access"].as_str(), tokens["refresh"].as_str()) {
        (Some(access), Some(refresh)) => Ok(User {
            access: access.to_string(),
            refresh: refresh.to_string(),
        }),
        _ => Err(format!("send_code answered without tokens: {tokens}").into()),
    }
}

/// The tokens of seed-004's register (step 2) or login (step 2) answer.
fn seed_user(answer: &Value) -> Res<User> {
    match (
        answer["access_token"].as_str(),
        answer["refresh_token"].as_str(),
    ) {
        (Some(access), Some(refresh)) => Ok(User {
            access: access.to_string(),
            refresh: refresh.to_string(),
        }),
        _ => Err(format!("step 2 answered without tokens: {answer}").into()),
    }
}

/// The session ids of a list-sessions answer: the caller's own (`current`),
/// or the others.
fn session_ids(list: &Value, current: bool) -> Vec<String> {
    list["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["current"].as_bool() == Some(current))
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// DynamoDB Local is a JVM: exercise every request type first so that its JIT
/// warm-up does not land in the first measurements.
async fn warm_up_dynamodb(helpers: &mut Fleet, phones: &mut Phones, n: usize) -> Res<()> {
    eprintln!("bench: warming DynamoDB Local up ({n} sign-ins, profiles and referrals)");
    let top = helpers.sign_in(&phones.next()).await?;
    let top_code = helpers.invite_code(&top).await?;
    for _ in 0..n {
        let user = helpers.sign_in(&phones.next()).await?;
        helpers.invite_code(&user).await?;
        helpers.refer(&user, &top_code).await?;
    }
    Ok(())
}

/// One fresh process: init, then one invocation of `event`.
async fn cold_start(
    settings: &Settings,
    env: &[(String, String)],
    name: &str,
    event: Vec<u8>,
    share: Option<&CpuShare>,
) -> Res<ColdSample> {
    cold_start_with(
        settings,
        env,
        name,
        async |function: &mut Function| Ok(call_ok(function, event).await?.0),
        share,
    )
    .await
}

/// One fresh process: init, then the one invocation `first_invocation`
/// makes (it gives that invocation's time). With `share`, the process is
/// moved into it once init has ended (its first `next` poll), as Lambda
/// throttles an invocation and not the init before it.
async fn cold_start_with(
    settings: &Settings,
    env: &[(String, String)],
    name: &str,
    first_invocation: impl AsyncFnOnce(&mut Function) -> Res<Duration>,
    share: Option<&CpuShare>,
) -> Res<ColdSample> {
    let mut function = Function::spawn(
        name,
        &settings.binary(name),
        env,
        &settings.log(&format!("{name}-cold")),
    )
    .await?;
    let result = async {
        let init = function.ready().await?;
        if let Some(share) = share {
            share.admit(function.pid()?)?;
        }
        let init_cpu = function.cpu_time()?;
        let first_invoke = first_invocation(&mut function).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(ColdSample {
            init,
            first_invoke,
            init_cpu,
            first_invoke_cpu: function.cpu_time()? - init_cpu,
            peak_rss_kb: function.peak_rss_kb()?,
        })
    }
    .await;
    function.stop().await;
    result
}

/// Which cold starts a round makes.
#[derive(Clone, Copy)]
enum Round<'a> {
    /// Every function, alternating with the baseline, over loopback HTTP.
    Plain,
    /// The functions that call AWS, against the TLS endpoints, without the baseline.
    Tls,
    /// As `Tls`, each first invocation at a 128 MB function's share of a CPU.
    Tls128Mb(&'a CpuShare),
}

async fn cold_phase(
    settings: &Settings,
    env: &[(String, String)],
    helpers: &mut Fleet,
    phones: &mut Phones,
    round_kind: Round<'_>,
) -> Res<BTreeMap<String, Vec<ColdSample>>> {
    let (tls, share) = match round_kind {
        Round::Plain => (false, None),
        Round::Tls => (true, None),
        Round::Tls128Mb(share) => (true, Some(share)),
    };
    let mut samples: BTreeMap<String, Vec<ColdSample>> = BTreeMap::new();
    // A user for retrieve, and a chain top for set_referrer (depth 1).
    let reader = helpers.sign_in(&phones.next()).await?;
    let top = helpers.sign_in(&phones.next()).await?;
    let top_code = helpers.invite_code(&top).await?;
    let label = match round_kind {
        Round::Plain => "cold starts",
        Round::Tls => "cold starts, DynamoDB and SNS over TLS",
        Round::Tls128Mb(_) => "cold starts over TLS, invocations at 128 MB's CPU share",
    };
    for round in 0..settings.cold_runs {
        eprint!(
            "\rbench: {label}, round {}/{}",
            round + 1,
            settings.cold_runs
        );
        for name in FUNCTIONS {
            // No AWS call: nothing to measure over TLS.
            if tls && matches!(name, "jwks" | "web" | "docs") {
                continue;
            }
            if !tls {
                let sample = cold_start(settings, env, BASELINE, events::baseline(), None).await?;
                samples.entry(BASELINE.into()).or_default().push(sample);
            }
            let event = match name {
                "get-code" => events::get_code(&phones.next()),
                "send-code" => {
                    let phone = phones.next();
                    let code = helpers.request_code(&phone).await?;
                    events::send_code(&phone, &code)
                }
                // A session of its own each round: a refresh token works
                // once (rotation); presented again, it would be answered
                // from the grace period, then refused as reuse.
                "refresh" => {
                    let fresh = helpers.sign_in(&phones.next()).await?;
                    events::refresh(&fresh.refresh)
                }
                "jwks" => events::jwks(),
                "web" => events::web(),
                // Its cold start generates the OpenAPI document; a warm
                // request serves the Swagger UI bundle, its largest answer.
                "docs" => events::docs(),
                "retrieve" => events::retrieve(&reader.access),
                "set-referrer" => {
                    let joiner = helpers.sign_in(&phones.next()).await?;
                    events::set_referrer(&joiner.access, &top_code)
                }
                // Each round a session of its own to end, as for refresh.
                "logout" => {
                    let fresh = helpers.sign_in(&phones.next()).await?;
                    events::logout(&fresh.refresh)
                }
                // A user of its own each round, signed in on three devices
                // (the logout_all flow below counts the same).
                "logout-all" => {
                    let user = helpers.sign_in_times(&phones.next(), 3).await?;
                    events::logout_all(&user.access)
                }
                // Reading only: the same user each round.
                "list-sessions" => events::list_sessions(&reader.access),
                // The other device's session, of a user of its own each round.
                "revoke-session" => {
                    let user = helpers.sign_in_times(&phones.next(), 2).await?;
                    let other = helpers.other_session(&user).await?;
                    events::revoke_session(&user.access, &other)
                }
                "delete-account" => {
                    let user = helpers.account_to_delete(&phones.next(), &top_code).await?;
                    events::delete_account(&user.access)
                }
                // seed-004. Step 1 of each two-step route, as get-code: a
                // new phone for register, a phone with an account (signed
                // in once, so no code is pending) for login.
                "register" => events::register(&phones.next(), None),
                "login" => {
                    let phone = phones.next();
                    helpers.sign_in(&phone).await?;
                    events::login(&phone, None)
                }
                "client-profile" => events::client_profile(&reader.access),
                // Reading only, as client-profile: the same user each round.
                "list-referrals" => events::list_referrals(&reader.access),
                // A referrer set by a user of its own each round, as set-referrer.
                "update-client-profile" => {
                    let joiner = helpers.sign_in(&phones.next()).await?;
                    events::update_client_profile(&joiner.access, &top_code)
                }
                _ => unreachable!("every function has an event"),
            };
            let sample = cold_start(settings, env, name, event, share).await?;
            samples.entry(name.into()).or_default().push(sample);
        }
    }
    eprintln!();
    Ok(samples)
}

/// One process per function, `n` invocations each; the events are made before the clock runs.
async fn warm_phase(
    settings: &Settings,
    env: &[(String, String)],
    helpers: &mut Fleet,
    sns: &SnsStub,
    phones: &mut Phones,
    results: &mut Results,
) -> Res<()> {
    let n = settings.warm_invocations;
    let new_phones: Vec<String> = (0..n).map(|_| phones.next()).collect();
    let top = helpers.sign_in(&phones.next()).await?;
    let top_code = helpers.invite_code(&top).await?;
    let mut users: Vec<User> = Vec::with_capacity(n);
    // Each of `users`' one session, as list-sessions shows it to them.
    let mut own_sessions: Vec<String> = Vec::with_capacity(n);
    for name in [BASELINE].into_iter().chain(FUNCTIONS) {
        eprintln!("bench: warm, {n} invocations of {name}");
        let events: Vec<Vec<u8>> = match name {
            BASELINE => (0..n).map(|_| events::baseline()).collect(),
            "get-code" => new_phones.iter().map(|p| events::get_code(p)).collect(),
            "send-code" => new_phones
                .iter()
                .map(|p| {
                    let code = sns.code_for(p).ok_or("get_code sent no SMS")?;
                    Ok(events::send_code(p, &code))
                })
                .collect::<Res<_>>()?,
            "refresh" => users.iter().map(|u| events::refresh(&u.refresh)).collect(),
            "jwks" => (0..n).map(|_| events::jwks()).collect(),
            "web" => (0..n).map(|_| events::web()).collect(),
            "docs" => (0..n).map(|_| events::docs()).collect(),
            "retrieve" => users.iter().map(|u| events::retrieve(&u.access)).collect(),
            "set-referrer" => users
                .iter()
                .map(|u| events::set_referrer(&u.access, &top_code))
                .collect(),
            // Users of their own, signed in now with one session each:
            // `users`' sessions must stay live for list-sessions and
            // revoke-session below (the flows count logout_all on three).
            "logout" | "logout-all" => {
                let mut batch = Vec::with_capacity(n);
                for _ in 0..n {
                    let fresh = helpers.sign_in(&phones.next()).await?;
                    batch.push(match name {
                        "logout" => events::logout(&fresh.refresh),
                        _ => events::logout_all(&fresh.access),
                    });
                }
                batch
            }
            "list-sessions" => users
                .iter()
                .map(|u| events::list_sessions(&u.access))
                .collect(),
            // Each user revokes the session list-sessions showed them: the
            // same one conditional write as revoking another device's.
            "revoke-session" => users
                .iter()
                .zip(&own_sessions)
                .map(|(u, sid)| events::revoke_session(&u.access, sid))
                .collect(),
            // seed-004. Step 1 of register for new phones (step 2 is
            // send-code's work); step 1 of login for `users`' phones, each
            // with an account and no code pending (send-code used theirs).
            "register" => (0..n)
                .map(|_| events::register(&phones.next(), None))
                .collect(),
            "login" => new_phones.iter().map(|p| events::login(p, None)).collect(),
            // `users`, each with a referrer (set-referrer above), no referrals.
            "client-profile" => users
                .iter()
                .map(|u| events::client_profile(&u.access))
                .collect(),
            // `users`' first page of referrals (they have none: an empty page).
            "list-referrals" => users
                .iter()
                .map(|u| events::list_referrals(&u.access))
                .collect(),
            // Users of their own, without a referrer yet (`users` have one).
            "update-client-profile" => {
                let mut batch = Vec::with_capacity(n);
                for _ in 0..n {
                    let fresh = helpers.sign_in(&phones.next()).await?;
                    batch.push(events::update_client_profile(&fresh.access, &top_code));
                }
                batch
            }
            // Last: deletes `users`, each with a referrer (set-referrer above).
            "delete-account" => users
                .iter()
                .map(|u| events::delete_account(&u.access))
                .collect(),
            _ => unreachable!("every function has events"),
        };
        let mut function = Function::spawn(
            name,
            &settings.binary(name),
            env,
            &settings.log(&format!("{name}-warm")),
        )
        .await?;
        function.ready().await?;
        let mut durations = Vec::with_capacity(n);
        let cpu_before = function.cpu_time()?;
        for event in events {
            let (duration, body) = call_ok(&mut function, event).await?;
            durations.push(duration);
            if name == "send-code" {
                users.push(user(&body)?);
            }
            if name == "list-sessions" {
                own_sessions.push(
                    session_ids(&body, true)
                        .pop()
                        .ok_or_else(|| format!("list-sessions without the caller's: {body}"))?,
                );
            }
        }
        let cpu = function.cpu_time()? - cpu_before;
        let peak_rss_kb = function.peak_rss_kb()?;
        function.stop().await;
        results.warm.insert(
            name.to_string(),
            Warm {
                durations,
                cpu,
                peak_rss_kb,
            },
        );
    }
    Ok(())
}

/// The DynamoDB requests of each flow, counted by the proxy around exactly that flow.
async fn flow_phase(
    counted: &mut Fleet,
    proxy: &DynamoProxy,
    phones: &mut Phones,
    results: &mut Results,
) -> Res<()> {
    eprintln!("bench: DynamoDB requests per flow");
    let mut record = |key: &str, what: &str, tally: Tally, duration: Duration| {
        results.flows.push(Flow {
            key: key.to_string(),
            what: what.to_string(),
            tally,
            duration,
        });
    };

    // Each sign-in counted whole, and its send_code on its own as well: what
    // a session added to it (issue 8: at most one write).
    let phone = phones.next();
    proxy.take();
    let code = counted.request_code(&phone).await?;
    let get_code = proxy.take();
    let (d, tokens) = call_ok(counted.get("send-code"), events::send_code(&phone, &code)).await?;
    let send_code = proxy.take();
    let me = user(&tokens)?;
    record(
        "sign_up",
        "get_code + send_code, new phone",
        get_code.plus(&send_code),
        d,
    );
    record(
        "send_code_new_user",
        "send_code alone, new phone (the sign-up's)",
        send_code,
        d,
    );

    let code = counted.request_code(&phone).await?;
    let get_code = proxy.take();
    let (d, _) = call_ok(counted.get("send-code"), events::send_code(&phone, &code)).await?;
    let send_code = proxy.take();
    record(
        "sign_in_returning",
        "get_code + send_code, known phone",
        get_code.plus(&send_code),
        d,
    );
    record(
        "send_code_returning",
        "send_code alone, known phone (the returning sign-in's)",
        send_code,
        d,
    );

    let (d, _) = call_ok(counted.get("refresh"), events::refresh(&me.refresh)).await?;
    record("refresh", "refresh", proxy.take(), d);

    // Refresh's other paths (issue 8: at most 2 requests). A client retrying
    // after a lost answer, with the token just rotated out: within the grace
    // period it gets the current pair, without another rotation.
    let mover = counted.sign_in(&phones.next()).await?;
    let (_, pair) = call_ok(counted.get("refresh"), events::refresh(&mover.refresh)).await?;
    let rotated = user(&pair)?;
    proxy.take();
    let (d, _) = call_ok(counted.get("refresh"), events::refresh(&mover.refresh)).await?;
    record(
        "refresh_grace",
        "refresh retried with the previous token, within the grace period",
        proxy.take(),
        d,
    );
    // Two rotations old, the first token has no grace: reuse, the session is revoked.
    call_ok(counted.get("refresh"), events::refresh(&rotated.refresh)).await?;
    proxy.take();
    let (d, refused) = call(counted.get("refresh"), events::refresh(&mover.refresh)).await?;
    expect_refusal(&refused, 401, "refresh_token_reused")?;
    record(
        "refresh_reused",
        "refresh with a token two rotations old (the session revoked)",
        proxy.take(),
        d,
    );

    let (d, profile) = call_ok(counted.get("retrieve"), events::retrieve(&me.access)).await?;
    expect_referrals(&profile, 0)?;
    record("profile_0", "retrieve, 0 referrals", proxy.take(), d);

    let host = counted.sign_in(&phones.next()).await?;
    let host_code = counted.invite_code(&host).await?;
    for _ in 0..100 {
        let referral = counted.sign_in(&phones.next()).await?;
        counted.refer(&referral, &host_code).await?;
    }
    proxy.take();
    let (d, profile) = call_ok(counted.get("retrieve"), events::retrieve(&host.access)).await?;
    expect_referrals(&profile, 100)?;
    record("profile_100", "retrieve, 100 referrals", proxy.take(), d);

    // What abuse costs: one code on its own (every budget counter included),
    // a code refused (the phone's cooldown: the counters taken are given
    // back), and a wrong guess.
    let phone = phones.next();
    proxy.take();
    let (d, _) = call_ok(counted.get("get-code"), events::get_code(&phone)).await?;
    record(
        "get_code",
        "get_code alone, new phone, every budget on",
        proxy.take(),
        d,
    );
    let (d, refused) = call(counted.get("get-code"), events::get_code(&phone)).await?;
    expect_refusal(&refused, 429, "resend_too_soon")?;
    record(
        "get_code_refused",
        "get_code refused by the phone's cooldown",
        proxy.take(),
        d,
    );
    let code = counted.sns.code_for(&phone).ok_or("get_code sent no SMS")?;
    let wrong = if code == "0000" { "1111" } else { "0000" };
    let (d, refused) = call(counted.get("send-code"), events::send_code(&phone, wrong)).await?;
    expect_refusal(&refused, 400, "code_invalid")?;
    record("send_code_wrong", "send_code, wrong code", proxy.take(), d);

    for depth in [1usize, 20] {
        // chain[0] is the top; each next user was referred by the one before.
        let mut chain: Vec<(User, String)> = Vec::with_capacity(depth);
        for _ in 0..depth {
            let member = counted.sign_in(&phones.next()).await?;
            let code = counted.invite_code(&member).await?;
            if let Some((_, above)) = chain.last() {
                counted.refer(&member, above).await?;
            }
            chain.push((member, code));
        }
        let joiner = counted.sign_in(&phones.next()).await?;
        let bottom_code = &chain.last().expect("depth >= 1").1;
        proxy.take();
        let (d, _) = call_ok(
            counted.get("set-referrer"),
            events::set_referrer(&joiner.access, bottom_code),
        )
        .await?;
        record(
            &format!("set_referrer_depth_{depth}"),
            &format!("set_referrer, chain of {depth} above the new referral"),
            proxy.take(),
            d,
        );
    }

    // Sessions and accounts (issue 8). Each flow's user is signed in first,
    // outside the count; what each leaves behind is checked after it.
    let leaving = counted.sign_in(&phones.next()).await?;
    proxy.take();
    let (d, _) = call_ok(counted.get("logout"), events::logout(&leaving.refresh)).await?;
    record("logout", "logout, one session", proxy.take(), d);

    let everywhere = counted.sign_in_times(&phones.next(), 3).await?;
    proxy.take();
    let (d, list) = call_ok(
        counted.get("list-sessions"),
        events::list_sessions(&everywhere.access),
    )
    .await?;
    expect_sessions(&list, 3)?;
    record(
        "list_sessions",
        "list-sessions, 3 sessions",
        proxy.take(),
        d,
    );
    let (d, _) = call_ok(
        counted.get("logout-all"),
        events::logout_all(&everywhere.access),
    )
    .await?;
    record("logout_all", "logout_all, 3 sessions", proxy.take(), d);
    let (_, list) = call_ok(
        counted.get("list-sessions"),
        events::list_sessions(&everywhere.access),
    )
    .await?;
    expect_sessions(&list, 0)?;

    let device = counted.sign_in_times(&phones.next(), 2).await?;
    let other = counted.other_session(&device).await?;
    proxy.take();
    let (d, _) = call_ok(
        counted.get("revoke-session"),
        events::revoke_session(&device.access, &other),
    )
    .await?;
    record(
        "revoke_session",
        "revoke-session, another device's session",
        proxy.take(),
        d,
    );
    let (_, list) = call_ok(
        counted.get("list-sessions"),
        events::list_sessions(&device.access),
    )
    .await?;
    expect_sessions(&list, 1)?;

    let account = counted
        .account_to_delete(&phones.next(), &host_code)
        .await?;
    proxy.take();
    let (d, _) = call_ok(
        counted.get("delete-account"),
        events::delete_account(&account.access),
    )
    .await?;
    record(
        "delete_account",
        "delete-account, 2 sessions and a referrer",
        proxy.take(),
        d,
    );
    let (_, gone) = call(counted.get("retrieve"), events::retrieve(&account.access)).await?;
    expect_refusal(&gone, 404, "user_not_found")?;
    proxy.take();

    seed_004_flows(counted, proxy, phones, &mut record, &host).await
}

/// seed-004's routes, counted as the sign-up and sign-in above: each
/// two-step flow whole, and its step 2 on its own as well.
async fn seed_004_flows(
    counted: &mut Fleet,
    proxy: &DynamoProxy,
    phones: &mut Phones,
    record: &mut impl FnMut(&str, &str, Tally, Duration),
    host: &User,
) -> Res<()> {
    let phone = phones.next();
    proxy.take();
    let (_, sent) = call_ok(counted.get("register"), events::register(&phone, None)).await?;
    let step_1 = proxy.take();
    if !sent["sms_code"].is_null() {
        return Err(format!("register step 1 answered the code in a release build: {sent}").into());
    }
    let code = counted
        .sns
        .code_for(&phone)
        .ok_or("register step 1 sent no SMS")?;
    let (d, registered) = call_status(
        counted.get("register"),
        events::register(&phone, Some(&code)),
        201,
    )
    .await?;
    let step_2 = proxy.take();
    let me = seed_user(&registered)?;
    record(
        "register",
        "register step 1 + step 2, new phone",
        step_1.plus(&step_2),
        d,
    );
    record(
        "register_step_2",
        "register step 2 alone, new phone (the registration's)",
        step_2,
        d,
    );

    // The same phone, now with an account: login's two steps (its
    // registration code is used, so none is pending), and register refused.
    call_ok(counted.get("login"), events::login(&phone, None)).await?;
    let step_1 = proxy.take();
    let code = counted
        .sns
        .code_for(&phone)
        .ok_or("login step 1 sent no SMS")?;
    let (d, logged_in) = call_ok(counted.get("login"), events::login(&phone, Some(&code))).await?;
    let step_2 = proxy.take();
    seed_user(&logged_in)?;
    if logged_in["id"] != registered["id"] {
        return Err(format!("login found another user: {logged_in} vs {registered}").into());
    }
    record(
        "login",
        "login step 1 + step 2, known phone",
        step_1.plus(&step_2),
        d,
    );
    record(
        "login_step_2",
        "login step 2 alone, known phone (the login's)",
        step_2,
        d,
    );
    let (d, refused) = call(counted.get("register"), events::register(&phone, None)).await?;
    expect_refusal(&refused, 400, "phone_already_registered")?;
    record(
        "register_refused",
        "register step 1, phone with an account (refused)",
        proxy.take(),
        d,
    );
    let (d, refused) = call(counted.get("login"), events::login(&phones.next(), None)).await?;
    expect_refusal(&refused, 400, "user_not_found")?;
    record(
        "login_refused",
        "login step 1, phone without an account (refused)",
        proxy.take(),
        d,
    );

    let (d, profile) = call_ok(
        counted.get("client-profile"),
        events::client_profile(&me.access),
    )
    .await?;
    expect_connections(&profile, 0)?;
    record(
        "client_profile",
        "client-profile GET, 0 invited clients",
        proxy.take(),
        d,
    );
    let (d, profile) = call_ok(
        counted.get("client-profile"),
        events::client_profile(&host.access),
    )
    .await?;
    expect_connections(&profile, 100)?;
    record(
        "client_profile_100",
        "client-profile GET, 100 invited clients",
        proxy.take(),
        d,
    );

    // GET /users/referrals/ (issue 15): one Query per page, whatever the
    // referrer's total: the first page of the user with none, and the two
    // default pages (50 each) of the host's 100.
    let (d, page) = call_ok(
        counted.get("list-referrals"),
        events::list_referrals(&me.access),
    )
    .await?;
    expect_page(&page, 0, false)?;
    record(
        "list_referrals_empty",
        "list-referrals, first page, 0 referrals",
        proxy.take(),
        d,
    );
    let (d, page) = call_ok(
        counted.get("list-referrals"),
        events::list_referrals(&host.access),
    )
    .await?;
    expect_page(&page, 50, true)?;
    record(
        "list_referrals_first",
        "list-referrals, first page of 100 referrals (50)",
        proxy.take(),
        d,
    );
    let cursor = page["next_cursor"].as_str().unwrap_or_default().to_string();
    let (d, page) = call_ok(
        counted.get("list-referrals"),
        events::list_referrals_after(&host.access, &cursor),
    )
    .await?;
    expect_page(&page, 50, false)?;
    record(
        "list_referrals_next",
        "list-referrals, second and last page of 100 referrals (cursor)",
        proxy.take(),
        d,
    );

    // As set_referrer_depth_1: the code of a user with no referrer.
    let top = counted.sign_in(&phones.next()).await?;
    let top_code = counted.invite_code(&top).await?;
    proxy.take();
    let (d, profile) = call_ok(
        counted.get("update-client-profile"),
        events::update_client_profile(&me.access, &top_code),
    )
    .await?;
    if profile["someone_invitation_code"] != top_code.as_str() {
        return Err(format!("PATCH did not set the referrer {top_code}: {profile}").into());
    }
    record(
        "update_client_profile",
        "update-client-profile PATCH, sets a referrer (chain of 1 above)",
        proxy.take(),
        d,
    );
    Ok(())
}

fn expect_refusal(reply: &Reply, status: u16, code: &str) -> Res<()> {
    if reply.status != status || reply.body["code"] != code {
        return Err(format!(
            "expected {status} {code}, got {}: {}",
            reply.status, reply.body
        )
        .into());
    }
    Ok(())
}

fn expect_sessions(list: &Value, n: usize) -> Res<()> {
    let got = list["sessions"].as_array().map_or(0, Vec::len);
    if got != n {
        return Err(format!("expected {n} live sessions, the list has {got}: {list}").into());
    }
    Ok(())
}

fn expect_connections(profile: &Value, n: usize) -> Res<()> {
    let got = profile["connections_invited_clients"]
        .as_array()
        .map_or(0, Vec::len);
    if got != n {
        return Err(
            format!("expected {n} invited clients, the profile has {got}: {profile}").into(),
        );
    }
    Ok(())
}

/// A page of list-referrals: `n` referrals, and a cursor exactly when `more`.
fn expect_page(page: &Value, n: usize, more: bool) -> Res<()> {
    let got = page["referrals"].as_array().map(Vec::len);
    if got != Some(n) || page["next_cursor"].is_string() != more {
        return Err(format!("expected a page of {n} (more: {more}): {page}").into());
    }
    Ok(())
}

fn expect_referrals(profile: &Value, n: usize) -> Res<()> {
    let got = profile["referrals"].as_array().map_or(0, Vec::len);
    if got != n {
        return Err(format!("expected {n} referrals, the profile has {got}: {profile}").into());
    }
    Ok(())
}

async fn run(settings: Settings) -> Res<()> {
    // Logs of this run only: one file per function and role.
    let _ = std::fs::remove_dir_all(settings.out.join("logs"));
    std::fs::create_dir_all(settings.out.join("logs"))?;
    for name in [BASELINE].into_iter().chain(measured()) {
        let binary = settings.binary(name);
        if !binary.is_file() {
            return Err(format!("{} is missing; build first", binary.display()).into());
        }
    }
    let sns = SnsStub::start(settings.sns_port).await?;
    let direct = format!("http://{}", settings.dynamodb);
    let env = settings.env_with(&direct, &sns.endpoint());
    let mut phones = Phones(0);
    let mut results = Results::default();

    let mut helpers = Fleet::start(&settings, &direct, &sns, "helper").await?;
    warm_up_dynamodb(&mut helpers, &mut phones, 100).await?;
    results.cold = cold_phase(&settings, &env, &mut helpers, &mut phones, Round::Plain).await?;
    if let Some(tls) = &settings.tls {
        let mut tls_env = settings.env_with(&tls.dynamodb, &tls.sns);
        tls_env.push(("SSL_CERT_FILE".into(), tls.ca_file.clone()));
        results.cold_tls =
            cold_phase(&settings, &tls_env, &mut helpers, &mut phones, Round::Tls).await?;
        match CpuShare::create(settings.cpu_period_us) {
            Ok(share) => {
                eprintln!("bench: a 128 MB function's CPU share: {}", share.describe());
                results.cold_128mb = cold_phase(
                    &settings,
                    &tls_env,
                    &mut helpers,
                    &mut phones,
                    Round::Tls128Mb(&share),
                )
                .await?;
                results.cpu_share = share.to_json();
            }
            Err(why) => {
                eprintln!(
                    "\x1b[31mbench: no 128 MB round, its cold starts are only modelled: {why}\x1b[0m"
                );
                results.cpu_share = serde_json::json!({ "unavailable": why });
            }
        }
    }
    warm_phase(
        &settings,
        &env,
        &mut helpers,
        &sns,
        &mut phones,
        &mut results,
    )
    .await?;
    results.joins = Some(joins::joins_phase(&settings, &env, &mut helpers, &mut phones).await?);
    helpers.stop().await;

    let proxy = DynamoProxy::counting(settings.dynamodb).await?;
    let mut counted = Fleet::start(&settings, &proxy.endpoint(), &sns, "counted").await?;
    flow_phase(&mut counted, &proxy, &mut phones, &mut results).await?;
    counted.stop().await;

    let stream = stream::stream_phase(&settings, &env).await?;
    results.cold.insert(stream::NAME.into(), stream.cold);
    results
        .cold
        .entry(BASELINE.into())
        .or_default()
        .extend(stream.baseline_cold);
    results.warm.insert(stream::NAME.into(), stream.warm);
    results.stream = Some(stream.throughput);

    eprintln!("bench: DynamoDB Local round trip");
    let key = serde_json::json!({ "pk": { "S": "+79000000001" } });
    let table = std::env::var("USERS_TABLE")?;
    results.dynamodb_round_trips =
        stubs::get_item_round_trips(settings.dynamodb, &table, &key, settings.warm_invocations)
            .await?;

    results.sizes = report::sizes(&settings.lambda_dir, settings.arm64_dir.as_deref());
    let summary = report::summary(&results, &settings.build);
    let path = settings.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")?;
    println!("{}", report::table(&summary));
    println!("written: {}", path.display());
    Ok(())
}

/// `bench record`: the recorder alone, until the process is stopped.
async fn record(args: &[String]) -> Res<()> {
    let [listen, upstream, file] = args else {
        return Err("usage: bench record LISTEN UPSTREAM FILE (addresses as host:port)".into());
    };
    let address = |a: &String| {
        a.parse::<SocketAddr>()
            .map_err(|_| format!("{a:?} is not host:port"))
    };
    let proxy = DynamoProxy::recording(address(listen)?, address(upstream)?, file.as_ref()).await?;
    eprintln!(
        "record: DynamoDB requests through {} to {upstream}, permissions in {file}",
        proxy.endpoint()
    );
    std::future::pending().await
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    if args.first().map(String::as_str) == Some("record") {
        if let Err(err) = runtime.block_on(record(&args[1..])) {
            eprintln!("record: {err}");
            std::process::exit(2);
        }
        return;
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("bench: {err}");
            std::process::exit(2);
        }
    };
    if let Err(err) = runtime.block_on(run(settings)) {
        eprintln!("\nbench: {err}");
        std::process::exit(1);
    }
}
