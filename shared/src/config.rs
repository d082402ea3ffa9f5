//! The one place configuration is read. Every variable, its default and meaning
//! is listed in the README; each function reads only what it uses, so a
//! function is never handed a secret it does not need.

use std::str::FromStr;

use crate::adapters::aws_http::TrustedRoots;
use crate::cors::Cors;
use crate::cursor::CursorKey;
use crate::limits::{CheckLimit, SendLimits, TestNumbers};
use crate::observe::{Output, PhoneRefKey, Reporter};
use crate::otp::OtpPolicy;
use crate::phone::{Phone, PhonePolicy, Region};
use crate::session::{RefreshKey, SessionPolicy};
use crate::sms_text::{self, Autofill, Lang, SmsTexts, Template};
use crate::token::{KeyError, TokenKeys, TokenSettings, TokenSigner, TokenVerifier};

/// Default for `PROFILE_REFERRALS_MAX`.
pub const DEFAULT_PROFILE_REFERRALS_MAX: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProvider {
    Sns,
    SmsAero,
    /// Writes the code to the log instead of sending it; only in `dev-mode` builds.
    #[cfg(feature = "dev-mode")]
    Log,
}

/// Where variables come from: the process environment, or a map in tests.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Config {
    lookup: Lookup,
}

impl Config {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Config {
            lookup: Box::new(lookup),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn number<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::Invalid(name, format!("{v:?} is not a number"))),
        }
    }

    /// A number that must be at least 1.
    fn positive<T: FromStr + Default + PartialEq>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        let value = self.number(name, default)?;
        if value == T::default() {
            return Err(ConfigError::Invalid(name, "must be at least 1".into()));
        }
        Ok(value)
    }

    /// A multi-line secret such as a PEM key; `\n` escapes are accepted so it fits one line of an env file.
    fn multiline(&self, name: &'static str) -> Result<String, ConfigError> {
        Ok(self.required(name)?.replace("\\n", "\n"))
    }

    /// `CORS_ALLOW_ORIGINS`: browser origins that may call the API (empty: none).
    pub fn cors(&self) -> Result<Cors, ConfigError> {
        Cors::parse(&self.get("CORS_ALLOW_ORIGINS").unwrap_or_default())
            .map_err(|e| ConfigError::Invalid("CORS_ALLOW_ORIGINS", e.to_string()))
    }

    /// `REFERRAL_MAX_DEPTH`: the longest referrer chain set_referrer walks.
    pub fn referral_max_depth(&self) -> Result<usize, ConfigError> {
        self.positive(
            "REFERRAL_MAX_DEPTH",
            crate::referral::DEFAULT_MAX_CHAIN_DEPTH,
        )
    }

    /// `PREVENT_USER_EXISTENCE_ERRORS` (`true`/`false`, default `false`):
    /// whether seed-004's register and login hide whether a phone has an
    /// account. `false` answers as the seed does (register refuses a
    /// registered phone, login an unknown one, each before any SMS), which
    /// tells anyone whether a number has an account; `true` makes both
    /// routes sign in or sign up exactly like get_code and send_code.
    /// Named after Cognito's setting for the same choice.
    pub fn prevent_user_existence_errors(&self) -> Result<bool, ConfigError> {
        match self.get("PREVENT_USER_EXISTENCE_ERRORS").as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError::Invalid(
                "PREVENT_USER_EXISTENCE_ERRORS",
                format!("{other:?} is neither \"true\" nor \"false\""),
            )),
        }
    }

    /// `AWS_REGION` (Lambda sets it; so do the local scripts): the region of
    /// every AWS client.
    pub fn aws_region(&self) -> Result<String, ConfigError> {
        self.required("AWS_REGION")
    }

    /// `SSL_CERT_FILE`: the root certificates (PEM) the AWS clients trust
    /// instead of Amazon Trust Services' (adapters::aws_http), e.g. a local
    /// TLS proxy's CA, or the system bundle where AWS's endpoints are
    /// certified by another CA. The file is read here, once.
    pub fn trusted_roots(&self) -> Result<TrustedRoots, ConfigError> {
        let Some(path) = self.get("SSL_CERT_FILE") else {
            return Ok(TrustedRoots::amazon());
        };
        let invalid = |why: String| ConfigError::Invalid("SSL_CERT_FILE", format!("{path}: {why}"));
        let pem = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
        TrustedRoots::from_pem(pem).map_err(invalid)
    }

    /// `AWS_ENDPOINT_URL_DYNAMODB`: where local runs and tests send
    /// DynamoDB requests. Empty counts as unset, as everywhere.
    pub fn dynamodb_endpoint_url(&self) -> Option<String> {
        self.get("AWS_ENDPOINT_URL_DYNAMODB")
    }

    /// `AWS_ENDPOINT_URL_SNS`: the same for SNS.
    pub fn sns_endpoint_url(&self) -> Option<String> {
        self.get("AWS_ENDPOINT_URL_SNS")
    }

    /// `AWS_ENDPOINT_URL_EVENTBRIDGE`: the same for EventBridge (moto locally).
    pub fn eventbridge_endpoint_url(&self) -> Option<String> {
        self.get("AWS_ENDPOINT_URL_EVENTBRIDGE")
    }

    /// How each request is reported (observe.rs): `AWS_LAMBDA_LOG_FORMAT=JSON`
    /// (Lambda sets it from the template's `LoggingConfig`) gives one JSON
    /// line with EMF metrics; anything else a human-readable line.
    /// `METRICS_NAMESPACE` is the metrics' CloudWatch namespace (the stack's
    /// name, deployed; `PhoneAuth` by default). A function whose requests
    /// carry phones derives the phone_ref key from `OTP_HMAC_KEY`.
    pub fn reporter(&self, function: &'static str, reads_phones: bool) -> Reporter {
        let output = match self.get("AWS_LAMBDA_LOG_FORMAT") {
            Some(format) if format.eq_ignore_ascii_case("json") => Output::JsonLines,
            _ => Output::Text,
        };
        Reporter::new(
            function,
            self.get("METRICS_NAMESPACE")
                .unwrap_or_else(|| "PhoneAuth".to_string()),
            reads_phones
                .then(|| self.otp_hmac_key().ok())
                .flatten()
                .map(|key| PhoneRefKey::derive(&key)),
            output,
        )
    }

    /// `EVENT_BUS_NAME`: the EventBridge bus the domain events go to.
    pub fn event_bus_name(&self) -> Result<String, ConfigError> {
        self.required("EVENT_BUS_NAME")
    }

    pub fn users_table(&self) -> Result<String, ConfigError> {
        self.required("USERS_TABLE")
    }

    pub fn otps_table(&self) -> Result<String, ConfigError> {
        self.required("OTPS_TABLE")
    }

    pub fn sessions_table(&self) -> Result<String, ConfigError> {
        self.required("SESSIONS_TABLE")
    }

    pub fn otp_hmac_key(&self) -> Result<Vec<u8>, ConfigError> {
        hmac_key("OTP_HMAC_KEY", self.required("OTP_HMAC_KEY")?)
    }

    /// `REFRESH_TOKEN_KEY`: the MAC key of refresh tokens. Changing it ends
    /// every session (their tokens stop verifying).
    pub fn refresh_key(&self) -> Result<RefreshKey, ConfigError> {
        let key = hmac_key("REFRESH_TOKEN_KEY", self.required("REFRESH_TOKEN_KEY")?)?;
        Ok(RefreshKey::new(&key))
    }

    /// `CURSOR_KEY`: the MAC key of the referral list's cursors. Changing it
    /// only invalidates the cursors handed out (clients start again from the
    /// first page).
    pub fn cursor_key(&self) -> Result<CursorKey, ConfigError> {
        let key = hmac_key("CURSOR_KEY", self.required("CURSOR_KEY")?)?;
        Ok(CursorKey::new(&key))
    }

    /// `PROFILE_REFERRALS_MAX` (0–1000): the most referrals a profile lists
    /// (the first ones, oldest first); `GET /users/referrals/` pages through
    /// all of them. Each listed one is an index item the profile reads.
    pub fn profile_referrals_max(&self) -> Result<usize, ConfigError> {
        let max = self.number("PROFILE_REFERRALS_MAX", DEFAULT_PROFILE_REFERRALS_MAX)?;
        if max > 1000 {
            return Err(ConfigError::Invalid(
                "PROFILE_REFERRALS_MAX",
                "at most 1000 (each is an index item every profile view reads)".into(),
            ));
        }
        Ok(max)
    }

    /// `SESSION_IDLE_DAYS`, `SESSION_MAX_DAYS`, `REFRESH_REUSE_GRACE_SECONDS`.
    pub fn session_policy(&self) -> Result<SessionPolicy, ConfigError> {
        const DAY: u64 = 86_400;
        let defaults = SessionPolicy::default();
        let idle_days: u64 = self.number("SESSION_IDLE_DAYS", defaults.idle_seconds / DAY)?;
        let max_days: u64 = self.number("SESSION_MAX_DAYS", defaults.max_seconds / DAY)?;
        if idle_days == 0 || max_days == 0 || idle_days > max_days || max_days > 3650 {
            return Err(ConfigError::Invalid(
                "SESSION_IDLE_DAYS/SESSION_MAX_DAYS",
                "both at least 1 day, the idle lifetime at most the absolute one, at most 3650"
                    .into(),
            ));
        }
        let reuse_grace_seconds =
            self.number("REFRESH_REUSE_GRACE_SECONDS", defaults.reuse_grace_seconds)?;
        // Longer than an access token's lifetime would let a stolen previous
        // token be exchanged long after its holder moved on.
        if reuse_grace_seconds > 300 {
            return Err(ConfigError::Invalid(
                "REFRESH_REUSE_GRACE_SECONDS",
                "at most 300 (a retry after a lost answer comes within seconds)".into(),
            ));
        }
        Ok(SessionPolicy {
            idle_seconds: idle_days * DAY,
            max_seconds: max_days * DAY,
            reuse_grace_seconds,
        })
    }

    pub fn otp_policy(&self) -> Result<OtpPolicy, ConfigError> {
        let defaults = OtpPolicy::default();
        let policy = OtpPolicy {
            length: self.number("OTP_LENGTH", defaults.length)?,
            ttl_seconds: self.number("OTP_TTL_SECONDS", defaults.ttl_seconds)?,
            max_attempts: self.number("OTP_MAX_ATTEMPTS", defaults.max_attempts)?,
            resend_cooldown_seconds: self.number(
                "OTP_RESEND_COOLDOWN_SECONDS",
                defaults.resend_cooldown_seconds,
            )?,
            max_sends_per_window: self
                .number("OTP_MAX_SENDS_PER_WINDOW", defaults.max_sends_per_window)?,
            send_window_seconds: self
                .number("OTP_SEND_WINDOW_SECONDS", defaults.send_window_seconds)?,
            max_failed_checks: self
                .positive("OTP_MAX_FAILED_CHECKS", defaults.max_failed_checks)?,
            lockout_window_seconds: self.positive(
                "OTP_LOCKOUT_WINDOW_SECONDS",
                defaults.lockout_window_seconds,
            )?,
        };
        if !(4..=10).contains(&policy.length) {
            return Err(ConfigError::Invalid(
                "OTP_LENGTH",
                "must be between 4 and 10".into(),
            ));
        }
        if policy.max_attempts == 0 || policy.ttl_seconds == 0 {
            return Err(ConfigError::Invalid(
                "OTP_MAX_ATTEMPTS/OTP_TTL_SECONDS",
                "must be positive".into(),
            ));
        }
        if policy.max_sends_per_window == 0
            || policy.send_window_seconds < policy.ttl_seconds.max(policy.resend_cooldown_seconds)
        {
            return Err(ConfigError::Invalid(
                "OTP_MAX_SENDS_PER_WINDOW/OTP_SEND_WINDOW_SECONDS",
                "must allow one code, and the window must outlast a code and the cooldown".into(),
            ));
        }
        Ok(policy)
    }

    /// `OTP_MAX_CHECKS_PER_IP`: how many codes one source may check an hour.
    pub fn check_limit(&self) -> Result<CheckLimit, ConfigError> {
        Ok(CheckLimit {
            max_per_source_per_hour: self.positive(
                "OTP_MAX_CHECKS_PER_IP",
                CheckLimit::default().max_per_source_per_hour,
            )?,
        })
    }

    /// `OTP_MAX_SENDS_PER_IP`, `SMS_DAILY_BUDGET`, `SMS_DAILY_BUDGET_BY_REGION`
    /// (`RU=50000,KZ=2000`): the budgets an SMS must fit. A country with a
    /// budget must be one that may sign in.
    pub fn send_limits(&self, phones: &PhonePolicy) -> Result<SendLimits, ConfigError> {
        let defaults = SendLimits::default();
        let max_per_source_per_hour =
            self.positive("OTP_MAX_SENDS_PER_IP", defaults.max_per_source_per_hour)?;
        let daily_budget = self.number("SMS_DAILY_BUDGET", defaults.daily_budget)?;
        const BY_REGION: &str = "SMS_DAILY_BUDGET_BY_REGION";
        let invalid = |why: String| ConfigError::Invalid(BY_REGION, why);
        let mut region_daily_budgets: Vec<(Region, u64)> = Vec::new();
        let text = self.get("SMS_DAILY_BUDGET_BY_REGION").unwrap_or_default();
        for entry in text.split(',').filter(|_| !text.is_empty()) {
            let (code, budget) = entry.split_once('=').ok_or_else(|| {
                invalid(format!(
                    "{entry:?} is not REGION=NUMBER (e.g. RU=50000,KZ=2000)"
                ))
            })?;
            let (code, budget) = (code.trim(), budget.trim());
            let region = Region::parse(code).ok_or_else(|| {
                invalid(format!(
                    "{code:?} is not an ISO 3166 region code in capitals (e.g. RU)"
                ))
            })?;
            let budget: u64 = (!budget.is_empty() && budget.bytes().all(|b| b.is_ascii_digit()))
                .then(|| budget.parse().ok())
                .flatten()
                .ok_or_else(|| {
                    invalid(format!("{code}: {budget:?} is not a whole number of SMS"))
                })?;
            if region_daily_budgets.iter().any(|(id, _)| *id == region) {
                return Err(invalid(format!("{code} is listed twice")));
            }
            if !phones.allowed_regions.is_empty() && !phones.allowed_regions.contains(&region) {
                return Err(invalid(format!(
                    "{code} has a budget but is not in PHONE_ALLOWED_REGIONS"
                )));
            }
            region_daily_budgets.push((region, budget));
        }
        Ok(SendLimits {
            max_per_source_per_hour,
            daily_budget,
            region_daily_budgets,
        })
    }

    /// `TEST_PHONE_NUMBERS` (`+79990000000:1234,+79990000001:5678`, phones in
    /// any spelling the API accepts) and `TEST_PHONE_NUMBERS_EXPIRE`
    /// (`YYYY-MM-DD`, the last day they work; required with numbers). Errors
    /// name an entry by its position, never by its number.
    pub fn test_numbers(
        &self,
        phones: &PhonePolicy,
        otp: &OtpPolicy,
    ) -> Result<TestNumbers, ConfigError> {
        const NUMBERS: &str = "TEST_PHONE_NUMBERS";
        let Some(text) = self.get("TEST_PHONE_NUMBERS") else {
            return Ok(TestNumbers::default());
        };
        let expire = self.required("TEST_PHONE_NUMBERS_EXPIRE")?;
        let last_day = crate::limits::parse_date(&expire).ok_or_else(|| {
            ConfigError::Invalid(
                "TEST_PHONE_NUMBERS_EXPIRE",
                format!("{expire:?} is not a date YYYY-MM-DD"),
            )
        })?;
        let mut codes = std::collections::HashMap::new();
        for (n, entry) in text.split(',').enumerate() {
            let invalid =
                |why: &str| ConfigError::Invalid(NUMBERS, format!("entry {}: {why}", n + 1));
            let (phone, code) = entry
                .rsplit_once(':')
                .ok_or_else(|| invalid("is not PHONE:CODE"))?;
            let phone = Phone::parse(phone, phones)
                .map_err(|e| invalid(&format!("not a phone this API accepts ({e})")))?;
            let code = code.trim();
            if !otp.is_well_formed(code) {
                return Err(invalid(&format!(
                    "the code must be {} digits (OTP_LENGTH)",
                    otp.length
                )));
            }
            if codes.insert(phone, code.to_string()).is_some() {
                return Err(invalid("the phone is listed twice"));
            }
        }
        Ok(TestNumbers::new(codes, last_day))
    }

    pub fn phone_policy(&self) -> Result<PhonePolicy, ConfigError> {
        let region = |name: &'static str, code: &str| {
            Region::parse(&code.to_ascii_uppercase()).ok_or_else(|| {
                ConfigError::Invalid(name, format!("{code:?} is not an ISO 3166 region code"))
            })
        };
        let default_region = region(
            "PHONE_DEFAULT_REGION",
            &self.get("PHONE_DEFAULT_REGION").unwrap_or("RU".into()),
        )?;
        let allowed_regions = self
            .get("PHONE_ALLOWED_REGIONS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|code| !code.is_empty())
            .map(|code| region("PHONE_ALLOWED_REGIONS", code))
            .collect::<Result<_, _>>()?;
        let policy = PhonePolicy {
            default_region,
            allowed_regions,
        };
        policy.warm_up();
        Ok(policy)
    }

    /// `TOKEN_ISSUER`: the tokens' `iss` (checked on verify) and the
    /// discovery document's `issuer`. Deployed, every function that signs or
    /// verifies tokens gets `https://<host of the jwks function's URL>` from
    /// the template, and the jwks function none: it cannot be told its own
    /// URL, so it derives the issuer from each request (endpoints/jwks.rs).
    /// The local scripts set it to the local base URL.
    pub fn token_issuer(&self) -> Option<String> {
        self.get("TOKEN_ISSUER")
    }

    pub fn token_settings(&self) -> Result<TokenSettings, ConfigError> {
        Ok(TokenSettings {
            issuer: self.token_issuer().unwrap_or("phone-auth".into()),
            audience: self.get("TOKEN_AUDIENCE").unwrap_or("phone-auth".into()),
            access_ttl_seconds: self.number("ACCESS_TOKEN_TTL_SECONDS", 15 * 60)?,
        })
    }

    /// Only the functions that mint tokens get the private key.
    pub fn token_signer(&self) -> Result<TokenSigner, ConfigError> {
        TokenSigner::from_pem(
            &self.multiline("TOKEN_PRIVATE_KEY")?,
            self.token_settings()?,
        )
        .map_err(|e| ConfigError::Invalid("TOKEN_PRIVATE_KEY", e.to_string()))
    }

    pub fn token_verifier(&self) -> Result<TokenVerifier, ConfigError> {
        Ok(TokenVerifier::new(
            self.token_keys()?,
            &self.token_settings()?,
        ))
    }

    /// `TOKEN_PUBLIC_KEY` (the current signing key's public half) and
    /// `TOKEN_PREVIOUS_PUBLIC_KEYS` (optional, concatenated PEM blocks: keys
    /// rotated out whose tokens may still be alive).
    pub fn token_keys(&self) -> Result<TokenKeys, ConfigError> {
        let previous = match self.get("TOKEN_PREVIOUS_PUBLIC_KEYS") {
            Some(_) => Some(self.multiline("TOKEN_PREVIOUS_PUBLIC_KEYS")?),
            None => None,
        };
        TokenKeys::from_pem(&self.multiline("TOKEN_PUBLIC_KEY")?, previous.as_deref()).map_err(
            |e| match e {
                KeyError::Malformed(name, _)
                | KeyError::TooShort(name, _)
                | KeyError::Duplicate(name, _) => ConfigError::Invalid(name, e.to_string()),
            },
        )
    }

    pub fn sms_provider(&self) -> Result<SmsProvider, ConfigError> {
        match self.get("SMS_PROVIDER").as_deref().unwrap_or("sns") {
            "sns" => Ok(SmsProvider::Sns),
            "smsaero" => Ok(SmsProvider::SmsAero),
            #[cfg(feature = "dev-mode")]
            "log" => Ok(SmsProvider::Log),
            #[cfg(not(feature = "dev-mode"))]
            "log" => Err(ConfigError::Invalid(
                "SMS_PROVIDER",
                "`log` exists only in local dev-mode builds; use `sns` or `smsaero`".into(),
            )),
            other => Err(ConfigError::Invalid(
                "SMS_PROVIDER",
                format!("{other:?}; expected sns or smsaero"),
            )),
        }
    }

    /// `SMS_SENDER_ID`: the alphanumeric sender SNS asks carriers to show,
    /// 1–11 letters or digits with at least one letter (what carriers accept).
    pub fn sns_sender_id(&self) -> Result<Option<String>, ConfigError> {
        self.get("SMS_SENDER_ID")
            .map(|id| {
                let ok = (1..=11).contains(&id.len())
                    && id.chars().all(|c| c.is_ascii_alphanumeric())
                    && id.chars().any(|c| c.is_ascii_alphabetic());
                ok.then_some(id).ok_or(ConfigError::Invalid(
                    "SMS_SENDER_ID",
                    "1 to 11 letters or digits, at least one a letter".into(),
                ))
            })
            .transpose()
    }

    /// `SMS_MAX_PRICE_USD`: SNS refuses to send a message that would cost
    /// more (`AWS.SNS.SMS.MaxPrice`), a cap on what one premium-rate route
    /// can cost. A positive decimal, kept as written.
    pub fn sns_max_price_usd(&self) -> Result<Option<String>, ConfigError> {
        self.get("SMS_MAX_PRICE_USD")
            .map(|price| match price.parse::<f64>() {
                Ok(p) if p.is_finite() && p > 0.0 && !price.contains(['e', 'E']) => Ok(price),
                _ => Err(ConfigError::Invalid(
                    "SMS_MAX_PRICE_USD",
                    format!("{price:?} is not a positive price in US dollars, e.g. 0.10"),
                )),
            })
            .transpose()
    }

    /// The sign-in SMS: `SMS_TEMPLATE_RU`/`SMS_TEMPLATE_EN` (defaults in
    /// `sms_text`), `WEBOTP_DOMAIN`, `ANDROID_APP_HASH`; refused at start if a
    /// message could exceed one SMS segment with this service's codes.
    pub fn sms_texts(&self) -> Result<SmsTexts, ConfigError> {
        let template = |name: &'static str, value: Option<String>, default: &str| {
            Template::parse(value.as_deref().unwrap_or(default))
                .map_err(|e| ConfigError::Invalid(name, e.to_string()))
        };
        let ru = self.get("SMS_TEMPLATE_RU");
        let ru = template("SMS_TEMPLATE_RU", ru, sms_text::DEFAULT_RU)?;
        let en = self.get("SMS_TEMPLATE_EN");
        let en = template("SMS_TEMPLATE_EN", en, sms_text::DEFAULT_EN)?;
        let domain = self.get("WEBOTP_DOMAIN");
        let hash = self.get("ANDROID_APP_HASH");
        let autofill = Autofill::new(domain.as_deref(), None)
            .map_err(|e| ConfigError::Invalid("WEBOTP_DOMAIN", e.to_string()))?;
        let autofill = Autofill::new(autofill.webotp_domain.as_deref(), hash.as_deref())
            .map_err(|e| ConfigError::Invalid("ANDROID_APP_HASH", e.to_string()))?;
        let otp = self.otp_policy()?;
        SmsTexts::new(ru, en, autofill, otp.ttl_seconds, otp.length).map_err(|(lang, e)| {
            let name = match lang {
                Lang::Ru => "SMS_TEMPLATE_RU",
                Lang::En => "SMS_TEMPLATE_EN",
            };
            ConfigError::Invalid(name, format!("the whole message {e}"))
        })
    }

    pub fn smsaero_credentials(&self) -> Result<(String, String), ConfigError> {
        Ok((
            self.required("SMSAERO_EMAIL")?,
            self.required("SMSAERO_API_KEY")?,
        ))
    }

    pub fn smsaero_sign(&self) -> String {
        self.get("SMSAERO_SIGN").unwrap_or("SMS Aero".into())
    }

    pub fn smsaero_base_url(&self) -> String {
        self.get("SMSAERO_BASE_URL")
            .unwrap_or("https://gate.smsaero.ru/v2".into())
    }
}

/// A server-side HMAC key: at least 32 characters of random data.
fn hmac_key(name: &'static str, key: String) -> Result<Vec<u8>, ConfigError> {
    if key.len() < 32 {
        return Err(ConfigError::Invalid(
            name,
            "must be at least 32 characters of random data".into(),
        ));
    }
    Ok(key.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = config(&[]);
        let otp = c.otp_policy().unwrap();
        assert_eq!(
            (otp.max_sends_per_window, otp.send_window_seconds),
            (5, 3600)
        );
        assert_eq!(
            (
                otp.length,
                otp.ttl_seconds,
                otp.max_attempts,
                otp.resend_cooldown_seconds
            ),
            (4, 300, 3, 60)
        );
        let tokens = c.token_settings().unwrap();
        assert_eq!(tokens.access_ttl_seconds, 900);
        assert_eq!(
            c.session_policy().unwrap(),
            SessionPolicy {
                idle_seconds: 30 * 86_400,
                max_seconds: 90 * 86_400,
                reuse_grace_seconds: 10,
            }
        );
        assert_eq!(c.sms_provider(), Ok(SmsProvider::Sns));
        assert_eq!(c.profile_referrals_max(), Ok(100));
        assert_eq!(c.prevent_user_existence_errors(), Ok(false));
        assert_eq!(c.phone_policy().unwrap().default_region, Region::RU);
        assert!(c.phone_policy().unwrap().allowed_regions.is_empty());
        assert_eq!(
            (otp.max_failed_checks, otp.lockout_window_seconds),
            (10, 86_400)
        );
        let limits = c.send_limits(&c.phone_policy().unwrap()).unwrap();
        assert_eq!(
            limits,
            SendLimits {
                max_per_source_per_hour: 50,
                daily_budget: 10_000,
                region_daily_budgets: vec![],
            }
        );
        let otp = c.otp_policy().unwrap();
        assert!(
            c.test_numbers(&c.phone_policy().unwrap(), &otp)
                .unwrap()
                .is_empty()
        );
    }

    fn limits(vars: &[(&str, &str)]) -> Result<SendLimits, ConfigError> {
        let c = config(vars);
        c.send_limits(&c.phone_policy().unwrap())
    }

    #[test]
    fn region_budgets_are_read_strictly() {
        let ok = limits(&[("SMS_DAILY_BUDGET_BY_REGION", "RU=50000, KZ=2000")]).unwrap();
        assert_eq!(
            ok.region_daily_budgets,
            vec![(Region::RU, 50_000), (Region::KZ, 2000)]
        );
        assert_eq!(
            limits(&[("SMS_DAILY_BUDGET_BY_REGION", "KZ=0")])
                .unwrap()
                .region_budget(Region::KZ),
            Some(0)
        );
        for bad in [
            "RU",
            "RU=",
            "RU=-1",
            "RU=1.5",
            "RU=lots",
            "ru=5",
            "XX=5",
            "RUS=5",
            "RU=5,",
            "RU=5,,KZ=3",
            "RU=5,RU=6",
            "=5",
        ] {
            let err = limits(&[("SMS_DAILY_BUDGET_BY_REGION", bad)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid("SMS_DAILY_BUDGET_BY_REGION", _)),
                "{bad:?}: {err:?}"
            );
        }
        let err = limits(&[
            ("PHONE_ALLOWED_REGIONS", "RU"),
            ("SMS_DAILY_BUDGET_BY_REGION", "RU=5,KZ=3"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("KZ has a budget but is not in PHONE_ALLOWED_REGIONS"),
            "{err}"
        );
        assert!(matches!(
            limits(&[("OTP_MAX_SENDS_PER_IP", "0")]),
            Err(ConfigError::Invalid("OTP_MAX_SENDS_PER_IP", _))
        ));
        let checks = |vars: &[(&str, &str)]| config(vars).check_limit();
        assert_eq!(checks(&[]).unwrap().max_per_source_per_hour, 100);
        assert_eq!(
            checks(&[("OTP_MAX_CHECKS_PER_IP", "7")])
                .unwrap()
                .max_per_source_per_hour,
            7
        );
        for bad in ["0", "-1", "x"] {
            assert!(matches!(
                checks(&[("OTP_MAX_CHECKS_PER_IP", bad)]),
                Err(ConfigError::Invalid("OTP_MAX_CHECKS_PER_IP", _))
            ));
        }
        assert!(matches!(
            limits(&[("SMS_DAILY_BUDGET", "-3")]),
            Err(ConfigError::Invalid("SMS_DAILY_BUDGET", _))
        ));
        assert_eq!(
            limits(&[("SMS_DAILY_BUDGET", "0")]).unwrap().daily_budget,
            0
        );
    }

    #[test]
    fn the_user_existence_switch_is_true_or_false_only() {
        let read = |v: &str| {
            config(&[("PREVENT_USER_EXISTENCE_ERRORS", v)]).prevent_user_existence_errors()
        };
        assert_eq!(read("true"), Ok(true));
        assert_eq!(read("false"), Ok(false));
        for bad in ["1", "yes", "TRUE", "on"] {
            assert!(
                matches!(
                    read(bad),
                    Err(ConfigError::Invalid("PREVENT_USER_EXISTENCE_ERRORS", _))
                ),
                "{bad:?}"
            );
        }
    }

    fn test_numbers(vars: &[(&str, &str)]) -> Result<TestNumbers, ConfigError> {
        let c = config(vars);
        c.test_numbers(&c.phone_policy().unwrap(), &c.otp_policy().unwrap())
    }

    #[test]
    fn test_numbers_need_an_expiry_and_valid_entries() {
        let numbers = test_numbers(&[
            (
                "TEST_PHONE_NUMBERS",
                "+79990000000:1234, 8 (999) 000-00-01:5678",
            ),
            ("TEST_PHONE_NUMBERS_EXPIRE", "2026-12-31"),
        ])
        .unwrap();
        assert_eq!(numbers.len(), 2);
        let policy = config(&[]).phone_policy().unwrap();
        let second = Phone::parse("+79990000001", &policy).unwrap();
        // 2026-12-31 23:59:59 UTC works, a second later it does not.
        let last_second = crate::limits::parse_date("2027-01-01").unwrap() * 86_400 - 1;
        assert_eq!(numbers.code_for(&second, last_second), Some("5678"));
        assert_eq!(numbers.code_for(&second, last_second + 1), None);
        assert_eq!(numbers.last_day(), "2026-12-31");
        assert_eq!(
            test_numbers(&[("TEST_PHONE_NUMBERS", "+79990000000:1234")]),
            Err(ConfigError::Missing("TEST_PHONE_NUMBERS_EXPIRE"))
        );
        let bad = |numbers: &str, expire: &str| {
            test_numbers(&[
                ("TEST_PHONE_NUMBERS", numbers),
                ("TEST_PHONE_NUMBERS_EXPIRE", expire),
            ])
            .unwrap_err()
        };
        for (numbers, expire, variable) in [
            (
                "+79990000000:1234",
                "31.12.2026",
                "TEST_PHONE_NUMBERS_EXPIRE",
            ),
            (
                "+79990000000:1234",
                "2026-02-30",
                "TEST_PHONE_NUMBERS_EXPIRE",
            ),
            ("+79990000000", "2026-12-31", "TEST_PHONE_NUMBERS"),
            ("+79990000000:12345", "2026-12-31", "TEST_PHONE_NUMBERS"),
            ("+79990000000:12a4", "2026-12-31", "TEST_PHONE_NUMBERS"),
            ("not a phone:1234", "2026-12-31", "TEST_PHONE_NUMBERS"),
            (
                "+79990000000:1234,79990000000:5678",
                "2026-12-31",
                "TEST_PHONE_NUMBERS",
            ),
            ("+79990000000:1234,", "2026-12-31", "TEST_PHONE_NUMBERS"),
        ] {
            let err = bad(numbers, expire);
            assert!(
                matches!(err, ConfigError::Invalid(name, _) if name == variable),
                "{numbers:?} {expire:?}: {err:?}"
            );
            assert!(!err.to_string().contains("7999"), "no number in {err}");
        }
        // A test number must be one the API accepts: here not a Russian one.
        let err = test_numbers(&[
            ("PHONE_ALLOWED_REGIONS", "KZ"),
            ("TEST_PHONE_NUMBERS", "+79990000000:1234"),
            ("TEST_PHONE_NUMBERS_EXPIRE", "2026-12-31"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("entry 1"), "{err}");
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        let c = config(&[
            ("OTP_TTL_SECONDS", "five"),
            ("OTP_HMAC_KEY", "short"),
            ("PHONE_ALLOWED_REGIONS", "RU, XX"),
        ]);
        assert_eq!(c.users_table(), Err(ConfigError::Missing("USERS_TABLE")));
        assert!(matches!(
            c.otp_policy(),
            Err(ConfigError::Invalid("OTP_TTL_SECONDS", _))
        ));
        assert!(matches!(
            c.otp_hmac_key(),
            Err(ConfigError::Invalid("OTP_HMAC_KEY", _))
        ));
        assert!(matches!(
            config(&[("REFRESH_TOKEN_KEY", "short")]).refresh_key(),
            Err(ConfigError::Invalid("REFRESH_TOKEN_KEY", _))
        ));
        assert!(matches!(
            config(&[]).refresh_key(),
            Err(ConfigError::Missing("REFRESH_TOKEN_KEY"))
        ));
        assert!(matches!(
            config(&[("CURSOR_KEY", "short")]).cursor_key(),
            Err(ConfigError::Invalid("CURSOR_KEY", _))
        ));
        assert!(matches!(
            config(&[]).cursor_key(),
            Err(ConfigError::Missing("CURSOR_KEY"))
        ));
        let referrals_max =
            |v: &str| config(&[("PROFILE_REFERRALS_MAX", v)]).profile_referrals_max();
        assert_eq!(referrals_max("0"), Ok(0));
        assert_eq!(referrals_max("1000"), Ok(1000));
        for bad in ["1001", "-1", "lots"] {
            assert!(
                matches!(
                    referrals_max(bad),
                    Err(ConfigError::Invalid("PROFILE_REFERRALS_MAX", _))
                ),
                "{bad:?}"
            );
        }
        for bad in [
            [("SESSION_IDLE_DAYS", "0")],
            [("SESSION_IDLE_DAYS", "91")],
            [("SESSION_MAX_DAYS", "x")],
            [("REFRESH_REUSE_GRACE_SECONDS", "301")],
        ] {
            assert!(config(&bad).session_policy().is_err(), "{bad:?}");
        }
        assert!(matches!(
            c.phone_policy(),
            Err(ConfigError::Invalid("PHONE_ALLOWED_REGIONS", _))
        ));
        assert!(matches!(
            config(&[("SMS_PROVIDER", "pigeon")]).sms_provider(),
            Err(ConfigError::Invalid(..))
        ));
        for (name, value) in [
            ("OTP_MAX_FAILED_CHECKS", "0"),
            ("OTP_LOCKOUT_WINDOW_SECONDS", "0"),
        ] {
            assert!(
                matches!(config(&[(name, value)]).otp_policy(), Err(ConfigError::Invalid(n, _)) if n == name),
                "{name}"
            );
        }
    }

    #[test]
    fn log_sms_exists_only_in_dev_builds() {
        let provider = config(&[("SMS_PROVIDER", "log")]).sms_provider();
        assert_eq!(provider.is_ok(), cfg!(feature = "dev-mode"));
    }

    #[test]
    fn pem_keys_may_use_escaped_newlines() {
        let (private, public) = crate::token::generate_key_pair();
        let c = config(&[
            ("TOKEN_PRIVATE_KEY", &private.replace('\n', "\\n")),
            ("TOKEN_PUBLIC_KEY", &public),
        ]);
        assert!(c.token_signer().is_ok());
        assert!(c.token_verifier().is_ok());
        assert!(matches!(
            config(&[("TOKEN_PUBLIC_KEY", "nope")]).token_verifier(),
            Err(ConfigError::Invalid(..))
        ));
        assert!(matches!(
            config(&[]).token_signer(),
            Err(ConfigError::Missing("TOKEN_PRIVATE_KEY"))
        ));
    }
}
