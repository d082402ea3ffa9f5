//! The sign-in SMS: its language, its text, and the lines that let phones
//! and browsers fill the code in by themselves. Everything here is decided at
//! cold start (templates are validated once) and is plain text work per request.
//!
//! One message is one SMS segment: a second segment costs a second SMS and can
//! arrive out of order. GSM-7 text fits 160 characters (the extension
//! characters `^{}\[~]|€` count twice); anything else, Cyrillic included, is
//! sent as UCS-2 and fits 70 UTF-16 units. A template that could exceed one
//! segment with a code of the configured length is refused at start.

use std::fmt;

use crate::phone::Region;

/// The languages a message can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    /// The request's `lang` field: `ru` or `en`, any case.
    pub fn parse(value: &str) -> Option<Lang> {
        match value.trim().to_ascii_lowercase().as_str() {
            "ru" => Some(Lang::Ru),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Russian where it is an official language (and SMS Aero's home
    /// market); English everywhere else.
    pub fn for_region(region: Option<Region>) -> Lang {
        match region {
            Some(Region::RU | Region::BY | Region::KZ | Region::KG) => Lang::Ru,
            _ => Lang::En,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must contain {{code}} exactly once")]
    NoCode,
    #[error("may contain {{minutes}} at most once, and no other {{…}} placeholder or brace")]
    UnknownPlaceholder,
    #[error(
        "is {0} with a {1}-digit code; one SMS segment holds {2} (GSM-7 160 characters, UCS-2 70)"
    )]
    TooLong(Segments, usize, usize),
    #[error("must be a host name such as example.com (no scheme, port or path)")]
    BadDomain,
    #[error("must be the 11-character app hash Google Play services computes")]
    BadAppHash,
}

/// A message text with one `{code}` and at most one `{minutes}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.matches("{code}").count() != 1 {
            return Err(TemplateError::NoCode);
        }
        if text.matches("{minutes}").count() > 1 {
            return Err(TemplateError::UnknownPlaceholder);
        }
        let rest = text.replace("{code}", "").replace("{minutes}", "");
        if rest.contains(['{', '}']) {
            return Err(TemplateError::UnknownPlaceholder);
        }
        Ok(Template(text.to_string()))
    }

    fn render(&self, code: &str, minutes: u64) -> String {
        self.0
            .replace("{code}", code)
            .replace("{minutes}", &minutes.to_string())
    }
}

/// The default English text: GSM-7, room for both autofill lines.
pub const DEFAULT_EN: &str =
    "{code} is your sign-in code. It expires in {minutes} min. Don't share it.";
/// The default Russian text (37 of UCS-2's 70 characters with a 4-digit
/// code): the warning not to share the code matters more than its lifetime.
/// It fits with the WebOTP line for a domain of up to 24 characters, with the
/// app hash, and with both for a domain of up to 12; beyond that a shorter
/// `SMS_TEMPLATE_RU` is needed (e.g. `Код входа: {code}`), and the service
/// says so at start.
pub const DEFAULT_RU: &str = "Код входа: {code}. Никому не сообщайте.";

/// Lines that let the receiving device take the code without the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Autofill {
    /// `WEBOTP_DOMAIN`: ends the message with `@<domain> #<code>`, the
    /// origin-bound one-time code line that Chrome's WebOTP API and Safari's
    /// `autocomplete="one-time-code"` read (only on that domain).
    pub webotp_domain: Option<String>,
    /// `ANDROID_APP_HASH`: the 11-character hash by which Google Play
    /// services' SMS Retriever hands the message to the app, with no tap.
    pub android_app_hash: Option<String>,
}

impl Autofill {
    pub fn new(
        webotp_domain: Option<&str>,
        android_app_hash: Option<&str>,
    ) -> Result<Autofill, TemplateError> {
        let domain = webotp_domain
            .map(|d| {
                let host_chars = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
                let ok = !d.is_empty()
                    && d.len() <= 253
                    && d.chars().all(host_chars)
                    && d.contains('.')
                    && !d.starts_with(['.', '-'])
                    && !d.ends_with(['.', '-']);
                ok.then(|| d.to_ascii_lowercase())
                    .ok_or(TemplateError::BadDomain)
            })
            .transpose()?;
        let hash = android_app_hash
            .map(|h| {
                let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
                (h.chars().count() == 11 && h.chars().all(base64))
                    .then(|| h.to_string())
                    .ok_or(TemplateError::BadAppHash)
            })
            .transpose()?;
        Ok(Autofill {
            webotp_domain: domain,
            android_app_hash: hash,
        })
    }
}

/// Everything needed to write a sign-in SMS, validated at start.
#[derive(Debug, Clone)]
pub struct SmsTexts {
    ru: Template,
    en: Template,
    autofill: Autofill,
    minutes: u64,
}

impl SmsTexts {
    /// Refuses a template that, with a `code_length`-digit code, the code's
    /// lifetime in minutes and the autofill lines, would not fit one segment.
    pub fn new(
        ru: Template,
        en: Template,
        autofill: Autofill,
        code_ttl_seconds: u64,
        code_length: usize,
    ) -> Result<SmsTexts, (Lang, TemplateError)> {
        let texts = SmsTexts {
            ru,
            en,
            autofill,
            minutes: code_ttl_seconds.div_ceil(60),
        };
        let widest_code = "9".repeat(code_length);
        for lang in [Lang::Ru, Lang::En] {
            let segments = Segments::of(&texts.message(lang, &widest_code));
            if segments.count > 1 {
                let capacity = segments.encoding.capacity();
                return Err((
                    lang,
                    TemplateError::TooLong(segments, code_length, capacity),
                ));
            }
        }
        Ok(texts)
    }

    /// The whole message: the language's text, then the app hash line, then
    /// the origin-bound line, which the format requires to be the last.
    pub fn message(&self, lang: Lang, code: &str) -> String {
        let template = match lang {
            Lang::Ru => &self.ru,
            Lang::En => &self.en,
        };
        let mut text = template.render(code, self.minutes);
        if let Some(hash) = &self.autofill.android_app_hash {
            text.push('\n');
            text.push_str(hash);
        }
        if let Some(domain) = &self.autofill.webotp_domain {
            text.push_str(&format!("\n\n@{domain} #{code}"));
        }
        text
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    /// Characters (septets or UTF-16 units) one segment holds.
    fn capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Per segment once a message needs several (the rest is the concatenation header).
    fn capacity_when_split(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

/// How a text goes over the air: its encoding, its length in that encoding,
/// and how many SMS segments it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    pub units: usize,
    pub count: usize,
}

/// GSM 03.38's default alphabet (one septet each), without the escape.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table: an escape septet plus one, two septets each.
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{c}";

impl Segments {
    pub fn of(text: &str) -> Segments {
        let gsm_septets: Option<usize> = text
            .chars()
            .map(|c| {
                if GSM7_BASIC.contains(c) {
                    Some(1)
                } else if GSM7_EXTENSION.contains(c) {
                    Some(2)
                } else {
                    None
                }
            })
            .sum();
        let (encoding, units) = match gsm_septets {
            Some(septets) => (Encoding::Gsm7, septets),
            None => (Encoding::Ucs2, text.encode_utf16().count()),
        };
        let count = if units <= encoding.capacity() {
            1
        } else {
            units.div_ceil(encoding.capacity_when_split())
        };
        Segments {
            encoding,
            units,
            count,
        }
    }
}

impl fmt::Display for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoding = match self.encoding {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        };
        write!(
            f,
            "{} {encoding} characters ({} segment{})",
            self.units,
            self.count,
            if self.count == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(autofill: Autofill) -> SmsTexts {
        SmsTexts::new(
            Template::parse(DEFAULT_RU).unwrap(),
            Template::parse(DEFAULT_EN).unwrap(),
            autofill,
            300,
            4,
        )
        .unwrap()
    }

    #[test]
    fn the_language_follows_the_region_unless_the_request_names_one() {
        let region = |code: &str| Region::parse(code);
        assert_eq!(Lang::for_region(region("RU")), Lang::Ru);
        assert_eq!(Lang::for_region(region("KZ")), Lang::Ru);
        assert_eq!(Lang::for_region(region("BY")), Lang::Ru);
        assert_eq!(Lang::for_region(region("KG")), Lang::Ru);
        assert_eq!(Lang::for_region(region("GB")), Lang::En);
        assert_eq!(Lang::for_region(None), Lang::En);
        assert_eq!(Lang::parse(" RU "), Some(Lang::Ru));
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("de"), None);
    }

    #[test]
    fn messages_carry_the_code_and_the_minutes() {
        let t = texts(Autofill::default());
        assert_eq!(
            t.message(Lang::En, "0421"),
            "0421 is your sign-in code. It expires in 5 min. Don't share it."
        );
        assert_eq!(
            t.message(Lang::Ru, "0421"),
            "Код входа: 0421. Никому не сообщайте."
        );
    }

    #[test]
    fn autofill_lines_follow_the_text_and_the_origin_line_is_last() {
        let autofill = Autofill::new(Some("Example.com"), Some("FA+9qCX9VSu")).unwrap();
        let short_ru = Template::parse("Код входа: {code}").unwrap();
        let en = Template::parse(DEFAULT_EN).unwrap();
        let t = SmsTexts::new(short_ru, en, autofill, 300, 4).unwrap();
        assert_eq!(
            t.message(Lang::Ru, "0421"),
            "Код входа: 0421\nFA+9qCX9VSu\n\n@example.com #0421"
        );
        assert!(
            t.message(Lang::En, "0421")
                .ends_with("\n\n@example.com #0421")
        );
    }

    /// The README's example ("The sign-in SMS"), which fills the segment exactly.
    #[test]
    fn the_readme_example_is_what_is_sent_and_fills_one_segment() {
        let t = texts(Autofill::new(Some("id.primer.ru"), Some("FA+9qCX9VSu")).unwrap());
        let message = t.message(Lang::Ru, "4821");
        assert_eq!(
            message,
            "Код входа: 4821. Никому не сообщайте.\nFA+9qCX9VSu\n\n@id.primer.ru #4821"
        );
        let segments = Segments::of(&message);
        assert_eq!(
            (segments.encoding, segments.units, segments.count),
            (Encoding::Ucs2, 70, 1)
        );
    }

    #[test]
    fn templates_need_exactly_one_code_and_no_unknown_placeholder() {
        assert_eq!(Template::parse("hello"), Err(TemplateError::NoCode));
        assert_eq!(Template::parse("{code} {code}"), Err(TemplateError::NoCode));
        assert_eq!(
            Template::parse("{code} for {name}"),
            Err(TemplateError::UnknownPlaceholder)
        );
        assert_eq!(
            Template::parse("{code} {minutes} {minutes}"),
            Err(TemplateError::UnknownPlaceholder)
        );
        assert!(Template::parse("{code}, {minutes} min").is_ok());
    }

    #[test]
    fn autofill_settings_are_checked() {
        assert_eq!(
            Autofill::new(Some("https://example.com"), None),
            Err(TemplateError::BadDomain)
        );
        assert_eq!(
            Autofill::new(Some("localhost"), None),
            Err(TemplateError::BadDomain)
        );
        assert_eq!(
            Autofill::new(None, Some("short")),
            Err(TemplateError::BadAppHash)
        );
        assert_eq!(
            Autofill::new(None, Some("FA+9qCX9VS!")),
            Err(TemplateError::BadAppHash)
        );
    }

    #[test]
    fn segments_are_counted_in_the_encoding_the_text_needs() {
        let gsm = Segments::of(&"a".repeat(160));
        assert_eq!(
            (gsm.encoding, gsm.units, gsm.count),
            (Encoding::Gsm7, 160, 1)
        );
        assert_eq!(Segments::of(&"a".repeat(161)).count, 2);
        // Extension characters take two septets.
        let ext = Segments::of(&format!("{}€", "a".repeat(158)));
        assert_eq!((ext.units, ext.count), (160, 1));
        assert_eq!(Segments::of(&format!("{}€", "a".repeat(159))).count, 2);
        // One Cyrillic letter makes the whole text UCS-2: 70 per segment.
        let ucs = Segments::of(&format!("Ж{}", "a".repeat(69)));
        assert_eq!(
            (ucs.encoding, ucs.units, ucs.count),
            (Encoding::Ucs2, 70, 1)
        );
        assert_eq!(Segments::of(&format!("Ж{}", "a".repeat(70))).count, 2);
        // Outside the BMP a character is two UTF-16 units.
        assert_eq!(Segments::of("😀").units, 2);
        // 153 / 67 per segment once split.
        assert_eq!(Segments::of(&"a".repeat(306)).count, 2);
        assert_eq!(Segments::of(&"a".repeat(307)).count, 3);
    }

    #[test]
    fn a_template_that_cannot_fit_one_segment_is_refused_at_start() {
        // 4 + 4 digits + 1 + 62 = 71 UTF-16 units: one over.
        let long_ru = Template::parse(&format!("Код {{code}} {}", "ж".repeat(62))).unwrap();
        let refused = SmsTexts::new(
            long_ru,
            Template::parse(DEFAULT_EN).unwrap(),
            Autofill::default(),
            300,
            4,
        );
        assert!(matches!(
            refused,
            Err((
                Lang::Ru,
                TemplateError::TooLong(
                    Segments {
                        encoding: Encoding::Ucs2,
                        ..
                    },
                    4,
                    70
                )
            ))
        ));
        // The defaults fit with the WebOTP line for a 24-character domain,
        // with the app hash, and with both for a 12-character domain.
        for autofill in [
            Autofill::new(Some("auth.my-example-app24.ru"), None).unwrap(),
            Autofill::new(None, Some("FA+9qCX9VSu")).unwrap(),
            Autofill::new(Some("example12.ru"), Some("FA+9qCX9VSu")).unwrap(),
        ] {
            let t = texts(autofill);
            for lang in [Lang::Ru, Lang::En] {
                assert_eq!(Segments::of(&t.message(lang, "1234")).count, 1, "{lang:?}");
            }
        }
        // Russian with both lines and a longer domain does not: refused, naming the language.
        let both = Autofill::new(Some("example13.com"), Some("FA+9qCX9VSu")).unwrap();
        let ru = Template::parse(DEFAULT_RU).unwrap();
        let en = Template::parse(DEFAULT_EN).unwrap();
        let refused = SmsTexts::new(ru, en, both, 300, 4);
        assert!(matches!(
            refused,
            Err((Lang::Ru, TemplateError::TooLong(..)))
        ));
    }
}
