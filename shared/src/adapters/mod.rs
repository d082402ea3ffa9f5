//! Everything that talks to AWS or another outside service lives here.

pub mod dynamo;
pub mod sms;
