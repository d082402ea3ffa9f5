//! Phone sign-in and referrals, shared by every Lambda function of the service.
//!
//! * Domain, no AWS types: [`phone`], [`otp`], [`limits`], [`invite`], [`referral`], [`cursor`],
//!   [`session`], [`token`], [`user`], [`sms_text`].
//! * Domain events and referral counts, from the users table's stream: [`user_events`];
//!   the function that publishes them: [`publish_events`].
//! * Ports the domain needs: [`store`], [`sms`]; their AWS/HTTP implementations: [`adapters`].
//! * HTTP: [`http`] reads requests, [`error`] is the one error type and its mapping,
//!   [`endpoints`] has one module per function.
//! * [`config`] is the one configuration loader; [`cors`] the browser-origin rules.
//! * [`observe`]: what each request reports to operators (log record, audit event, metrics).

pub mod adapters;
pub mod config;
pub mod cors;
pub mod cursor;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod invite;
pub mod limits;
pub mod observe;
pub mod otp;
pub mod phone;
pub mod publish_events;
pub mod referral;
pub mod session;
pub mod sms;
pub mod sms_text;
pub mod store;
pub mod token;
pub mod user;
pub mod user_events;
