//! The committed `openapi.json` is the document the code generates
//! (endpoints::openapi), so a reviewer sees every change to the API's
//! description in the diff. Pure: needs no peer.
//!
//! After changing a request, response or error, regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p phone_auth --test openapi` and commit it.

use std::path::Path;

use phone_auth::endpoints::openapi::document_text;

#[test]
fn the_committed_openapi_json_is_the_one_the_code_generates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json");
    let generated = document_text();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("openapi.json is writable");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json differs from what the code generates; run \
         `UPDATE_OPENAPI=1 cargo test -p phone_auth --test openapi` and commit it"
    );
}
