//! A user's referrals against DynamoDB Local: `GET /users/referrals/` pages
//! (newest first, `next_cursor` null exactly at the end, the limit's bounds,
//! cursors that are not the caller's own refused), the profiles' capped
//! lists (the first `PROFILE_REFERRALS_MAX`, oldest first, read with one
//! `Limit`ed Query), `referrals_count` as the stream consumer leaves it, and
//! deleted referrals leaving the index.

mod support;

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::Method;
use lambda_http::{Request, RequestExt};
use phone_auth::adapters::dynamo::UserTable;
use phone_auth::endpoints::{ClientProfile, ListReferrals, Retrieve, UpdateClientProfile};
use phone_auth::store::{NewUser, Referrer, ReferrerWrite, User, UserStore};
use phone_auth::user::UserId;
use serde_json::{Value, json};
use support::{
    a_user, access_token, assert_error, call, dynamo, endpoint, env, now, parse_phone, raw_user,
    request, unique_phone,
};

async fn users() -> UserTable {
    UserTable::new(dynamo().await, env("USERS_TABLE"))
}

async fn new_user(users: &UserTable) -> User {
    let user = a_user(parse_phone(&unique_phone()));
    assert_eq!(
        users.create(&user).await.unwrap(),
        NewUser::Created(user.clone())
    );
    user
}

/// A referrer and `count` referrals who entered their code at the given
/// times (unix seconds), in that order. Returned oldest first.
async fn referrer_with_times(times: &[u64]) -> (User, Vec<User>) {
    let users = users().await;
    let referrer = new_user(&users).await;
    let to_referrer = Referrer {
        id: referrer.id,
        invite_code: referrer.invite_code.clone(),
    };
    let mut referrals = Vec::new();
    for &at in times {
        let referral = new_user(&users).await;
        assert_eq!(
            users
                .set_referrer(referral.id, &to_referrer, referrer.id, at)
                .await
                .unwrap(),
            ReferrerWrite::Set
        );
        referrals.push(referral);
    }
    (referrer, referrals)
}

/// A referrer and `count` referrals who joined one second apart, an hour ago
/// onwards. Returned oldest first.
async fn referrer_with(count: usize) -> (User, Vec<User>) {
    let start = now() - 3600;
    let times: Vec<u64> = (0..count as u64).map(|i| start + i).collect();
    referrer_with_times(&times).await
}

fn get(query: &str, access: &str) -> Request {
    let query = QueryMap::from_str(query).unwrap();
    request(Method::GET, "", Some(access)).with_query_string_parameters(query)
}

async fn page(me: UserId, query: &str) -> (u16, Value) {
    let list = endpoint::<ListReferrals>(&[]).await;
    call(&list, get(query, &access_token(me))).await
}

/// Every page at `limit`, following `next_cursor`: each page's phones.
/// Asserts what every page must be: 200, `joined_at` a number, and a
/// `next_cursor` on every page but the last.
async fn all_pages(me: UserId, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut query = format!("limit={limit}");
    loop {
        let (status, body) = page(me, &query).await;
        assert_eq!(status, 200, "{body}");
        let referrals = body["referrals"].as_array().unwrap();
        assert!(referrals.len() <= limit, "{body}");
        for referral in referrals {
            assert!(referral["joined_at"].is_u64(), "{body}");
            assert_eq!(referral.as_object().unwrap().len(), 2, "{body}");
        }
        pages.push(
            referrals
                .iter()
                .map(|r| r["phone"].as_str().unwrap().to_string())
                .collect(),
        );
        match &body["next_cursor"] {
            Value::Null => return pages,
            Value::String(cursor) => {
                assert!(pages.len() < 200, "no end");
                query = format!("limit={limit}&cursor={cursor}");
            }
            other => panic!("next_cursor is {other}"),
        }
    }
}

fn phones(users: &[User]) -> Vec<String> {
    users.iter().map(|u| u.phone.as_str().to_string()).collect()
}

fn newest_first(users: &[User]) -> Vec<String> {
    let mut phones = phones(users);
    phones.reverse();
    phones
}

// ---------------------------------------------------------------- pages

/// With 0, 1, limit and limit + 1 referrals: one page (empty, one, full)
/// with no cursor, then two pages, the first with a cursor that leads to the
/// last one. Newest first throughout.
#[tokio::test]
async fn pages_end_exactly_where_the_referrals_do() {
    const LIMIT: usize = 3;
    for count in [0, 1, LIMIT, LIMIT + 1] {
        let (referrer, referrals) = referrer_with(count).await;
        let pages = all_pages(referrer.id, LIMIT).await;
        let expected: Vec<Vec<String>> = if count == 0 {
            vec![vec![]]
        } else {
            newest_first(&referrals)
                .chunks(LIMIT)
                .map(|c| c.to_vec())
                .collect()
        };
        assert_eq!(pages, expected, "{count} referrals");
    }
}

#[tokio::test]
async fn joined_at_is_when_they_entered_the_code() {
    let (referrer, _) = referrer_with_times(&[1_700_000_100, 1_700_000_200]).await;
    let (status, body) = page(referrer.id, "").await;
    assert_eq!(status, 200, "{body}");
    let joined: Vec<u64> = body["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["joined_at"].as_u64().unwrap())
        .collect();
    assert_eq!(joined, [1_700_000_200, 1_700_000_100]);
    assert_eq!(body["next_cursor"], Value::Null);
}

/// The cursor carries the referral's id as well as the second: referrals
/// who joined in the same second are each listed once, across pages.
#[tokio::test]
async fn referrals_of_the_same_second_are_each_listed_once() {
    let at = now() - 60;
    let (referrer, referrals) = referrer_with_times(&[at; 5]).await;
    let pages = all_pages(referrer.id, 2).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "{pages:?}"
    );
    let mut listed: Vec<String> = pages.concat();
    listed.sort();
    let mut expected = phones(&referrals);
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn a_page_holds_50_unless_asked_and_100_at_most() {
    let (referrer, referrals) = referrer_with(101).await;
    let newest = newest_first(&referrals);
    let listed = |body: &Value| -> Vec<String> {
        body["referrals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["phone"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, first) = page(referrer.id, "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(listed(&first), newest[..50]);
    assert!(first["next_cursor"].is_string());

    let (status, most) = page(referrer.id, "limit=100").await;
    assert_eq!(status, 200, "{most}");
    assert_eq!(listed(&most), newest[..100]);
    let cursor = most["next_cursor"].as_str().unwrap();
    let (status, last) = page(referrer.id, &format!("limit=100&cursor={cursor}")).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(listed(&last), newest[100..]);
    assert_eq!(last["next_cursor"], Value::Null);
}

#[tokio::test]
async fn every_limit_but_a_whole_number_from_1_to_100_is_refused() {
    let (referrer, _) = referrer_with(2).await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit",
        "limit=1.5",
        "limit=%2B5",
        "limit=%205",
        "limit=1000",
        "limit=5&limit=5",
        "limit=5&limit=6",
    ] {
        assert_error(page(referrer.id, query).await, 400, "invalid_limit");
    }
    // Other parameters are no business of this route's.
    assert_eq!(page(referrer.id, "limit=1&other=x").await.0, 200);
}

/// A cursor is good for its caller, unchanged: a byte flipped in the
/// position or in the tag, another user's cursor, garbage, an empty or a
/// repeated one are each 400 invalid_cursor, never a page.
#[tokio::test]
async fn a_changed_made_up_or_someone_elses_cursor_is_refused() {
    let (me, _) = referrer_with(3).await;
    let (other, _) = referrer_with(3).await;
    let cursor_of = |body: Value| body["next_cursor"].as_str().unwrap().to_string();
    let mine = cursor_of(page(me.id, "limit=1").await.1);
    let theirs = cursor_of(page(other.id, "limit=1").await.1);

    // Unchanged, it works.
    let (status, body) = page(me.id, &format!("limit=1&cursor={mine}")).await;
    assert_eq!(status, 200, "{body}");

    let flipped = |at: usize| {
        let mut bytes = B64.decode(&mine).unwrap();
        bytes[at] ^= 0x01;
        B64.encode(bytes)
    };
    let refused = [
        ("a byte of the position flipped", flipped(3)),
        ("a byte of the id flipped", flipped(15)),
        ("a byte of the tag flipped", flipped(40)),
        ("another user's cursor", theirs.clone()),
        ("garbage", "not-a-cursor".to_string()),
        ("garbage of the right length", "A".repeat(mine.len())),
        ("empty", String::new()),
        ("truncated", mine[..mine.len() - 1].to_string()),
        ("repeated", format!("{mine}&cursor={mine}")),
    ];
    for (what, cursor) in refused {
        let answer = page(me.id, &format!("limit=1&cursor={cursor}")).await;
        assert_eq!(
            (answer.0, answer.1["code"].as_str()),
            (400, Some("invalid_cursor")),
            "{what}: {}",
            answer.1
        );
    }
    // And mine is no good to them.
    assert_error(
        page(other.id, &format!("limit=1&cursor={mine}")).await,
        400,
        "invalid_cursor",
    );
}

#[tokio::test]
async fn the_route_wants_an_access_token_and_a_get() {
    let list = endpoint::<ListReferrals>(&[]).await;
    assert_error(
        call(&list, request(Method::GET, "", None)).await,
        401,
        "missing_token",
    );
    let access = access_token(UserId::generate());
    assert_error(
        call(&list, request(Method::POST, "", Some(&access))).await,
        405,
        "method_not_allowed",
    );
    // Somebody without referrals (or unknown): an empty last page.
    assert_eq!(
        call(&list, get("", &access)).await,
        (200, json!({ "referrals": [], "next_cursor": null }))
    );
}

// ---------------------------------------------------------------- deletion

/// A deleted referral's tombstone leaves the index (it loses
/// `referred_at`, keeps `referrer_id` for the no-circle rule): gone from the
/// pages, from a page a cursor handed out before pointed at, and from the
/// profile.
#[tokio::test]
async fn a_deleted_referral_leaves_the_pages_and_the_profile() {
    let users = users().await;
    let (referrer, referrals) = referrer_with(4).await;
    // Newest first: [3], [2], [1], [0]; the first page's cursor points at [3].
    let (_, first) = page(referrer.id, "limit=1").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    for gone in [&referrals[3], &referrals[1]] {
        assert!(users.delete(gone, now()).await.unwrap());
    }
    let tombstone = raw_user(referrals[1].id).await;
    assert!(!tombstone.contains_key("referred_at"), "{tombstone:?}");
    assert!(!tombstone.contains_key("phone"));
    assert_eq!(
        tombstone["referrer_id"],
        AttributeValue::N(referrer.id.to_string())
    );
    assert_eq!(
        users.referrer_of(referrals[1].id).await.unwrap(),
        Some(referrer.id)
    );

    let left = [referrals[0].clone(), referrals[2].clone()];
    assert_eq!(
        all_pages(referrer.id, 1).await,
        [
            vec![newest_first(&left)[0].clone()],
            vec![newest_first(&left)[1].clone()],
        ]
    );
    // The cursor pointed at a referral since deleted: the page after it is still right.
    let (status, after) = page(referrer.id, &format!("limit=5&cursor={cursor}")).await;
    assert_eq!(status, 200, "{after}");
    let (joined_2, joined_0) = (raw_n(&referrals[2]).await, raw_n(&referrals[0]).await);
    assert_eq!(
        after,
        json!({
            "referrals": [
                { "phone": referrals[2].phone.as_str(), "joined_at": joined_2 },
                { "phone": referrals[0].phone.as_str(), "joined_at": joined_0 },
            ],
            "next_cursor": null,
        })
    );
    let profile = endpoint::<Retrieve>(&[]).await;
    let (status, me) = call(&profile, get("", &access_token(referrer.id))).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["referrals"], json!(phones(&left)));
}

/// `referred_at` of a user's item.
async fn raw_n(user: &User) -> u64 {
    raw_user(user.id).await["referred_at"]
        .as_n()
        .unwrap()
        .parse()
        .unwrap()
}

/// An account deleted before tombstones lost `referred_at` is still in the
/// index, without a phone: left out, and the page is still filled from the
/// referrals after it.
#[tokio::test]
async fn an_old_tombstone_still_in_the_index_is_skipped_and_the_page_stays_full() {
    let (referrer, referrals) = referrer_with(4).await;
    // As deletion used to leave it: phone removed, referred_at kept.
    for old in [&referrals[2], &referrals[3]] {
        dynamo()
            .await
            .update_item()
            .table_name(env("USERS_TABLE"))
            .key("pk", AttributeValue::S(format!("USER#{}", old.id)))
            .update_expression("REMOVE phone SET deleted_at = :now")
            .expression_attribute_values(":now", AttributeValue::N(now().to_string()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        all_pages(referrer.id, 2).await,
        [newest_first(&referrals[..2])]
    );
    let profile = endpoint::<Retrieve>(&[("PROFILE_REFERRALS_MAX", "1")]).await;
    let (_, me) = call(&profile, get("", &access_token(referrer.id))).await;
    assert_eq!(me["referrals"], json!(phones(&referrals[..1])));
}

// ---------------------------------------------------------------- profiles

/// Counts the Query requests a client sends and records their `Limit`.
#[derive(Clone, Debug, Default)]
struct QueryLimits(Arc<Mutex<Vec<Option<i32>>>>);

impl Intercept for QueryLimits {
    fn name(&self) -> &'static str {
        "QueryLimits"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(query) = context.input().downcast_ref::<QueryInput>() {
            self.0.lock().unwrap().push(query.limit());
        }
        Ok(())
    }
}

/// The profiles list the first PROFILE_REFERRALS_MAX referrals, oldest
/// first, reading that many index items in one Query (here 3 of 5): GET
/// /users/retrieve/, and seed-004's profile on GET and on PATCH.
#[tokio::test]
async fn the_profiles_list_the_first_profile_referrals_max_oldest_first() {
    let (referrer, referrals) = referrer_with(5).await;
    let first_three = json!(phones(&referrals[..3]));
    let max = [("PROFILE_REFERRALS_MAX", "3")];
    let access = access_token(referrer.id);

    let limits = QueryLimits::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&support::aws().await)
            .interceptor(limits.clone())
            .build(),
    );
    let retrieve = Retrieve {
        users: UserTable::new(client, env("USERS_TABLE")),
        ..endpoint::<Retrieve>(&max).await
    };
    let (status, me) = call(&retrieve, get("", &access)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["referrals"], first_three);
    assert_eq!(*limits.0.lock().unwrap(), [Some(3)], "one Query, Limit 3");

    let (status, me) = call(&endpoint::<ClientProfile>(&max).await, get("", &access)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["connections_invited_clients"], first_three);

    // The referrer names a referrer of their own: PATCH answers the same list.
    let (top, _) = referrer_with(0).await;
    let patch = request(
        Method::PATCH,
        &json!({ "invitation_code": top.invite_code.as_str() }).to_string(),
        Some(&access),
    );
    let (status, me) = call(&endpoint::<UpdateClientProfile>(&max).await, patch).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["connections_invited_clients"], first_three);

    // 0: no list, and no Query at all.
    limits.0.lock().unwrap().clear();
    let none = Retrieve {
        referrals_max: 0,
        ..retrieve
    };
    let (_, me) = call(&none, get("", &access)).await;
    assert_eq!(me["referrals"], json!([]));
    assert!(limits.0.lock().unwrap().is_empty());
    // The default: all 5 (fewer than 100).
    let (_, me) = call(&endpoint::<Retrieve>(&[]).await, get("", &access)).await;
    assert_eq!(me["referrals"], json!(phones(&referrals)));
}

/// `referrals_count` is what the stream consumer left on the item (written
/// here directly: the consumer is not this code's), 0 when absent (or below
/// zero), on both profiles.
#[tokio::test]
async fn referrals_count_is_shown_as_the_stream_consumer_left_it() {
    let users = users().await;
    let counted = new_user(&users).await;
    let uncounted = new_user(&users).await;
    let below_zero = new_user(&users).await;
    for (user, count) in [(&counted, 7), (&below_zero, -2)] {
        dynamo()
            .await
            .update_item()
            .table_name(env("USERS_TABLE"))
            .key("pk", AttributeValue::S(format!("USER#{}", user.id)))
            .update_expression("ADD referrals_count :n")
            .expression_attribute_values(":n", AttributeValue::N(count.to_string()))
            .send()
            .await
            .unwrap();
    }
    let retrieve = endpoint::<Retrieve>(&[]).await;
    let client_profile = endpoint::<ClientProfile>(&[]).await;
    for (user, expected) in [(&counted, 7), (&uncounted, 0), (&below_zero, 0)] {
        let access = access_token(user.id);
        let (status, me) = call(&retrieve, get("", &access)).await;
        assert_eq!(
            (status, &me["referrals_count"]),
            (200, &json!(expected)),
            "{me}"
        );
        let (status, me) = call(&client_profile, get("", &access)).await;
        assert_eq!(
            (status, &me["referrals_count"]),
            (200, &json!(expected)),
            "{me}"
        );
    }
    // Reading the user never writes the count back, nor does setting a referrer.
    let (top, _) = referrer_with(0).await;
    let to_top = Referrer {
        id: top.id,
        invite_code: top.invite_code.clone(),
    };
    users
        .set_referrer(counted.id, &to_top, top.id, now())
        .await
        .unwrap();
    assert_eq!(
        raw_user(counted.id).await["referrals_count"],
        AttributeValue::N("7".into())
    );
    assert!(!raw_user(uncounted.id).await.contains_key("referrals_count"));
}
