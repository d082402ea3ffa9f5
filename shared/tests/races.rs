//! The endpoints' race and failure paths, made to happen on purpose: the
//! in-memory ports (`support::memory`) hold the storage rules, and a script
//! (`support::scripted`) runs another request's write, a wait, or a failure
//! right before a chosen call. No DynamoDB, no timing luck.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lambda_http::Request;
use lambda_http::http::Method;
use phone_auth::endpoints::SendCode;
use phone_auth::invite::InviteCode;
use phone_auth::limits::{Counters, Source};
use phone_auth::otp::{OtpPolicy, PendingCode};
use phone_auth::phone::Phone;
use phone_auth::store::{CounterStore, OtpStore, Referrer, ReferrerWrite, User, UserStore};
use serde_json::json;
use support::memory::{MemoryCounters, MemoryOtps, MemorySms, MemoryUsers};
use support::scripted::{Script, Scripted, Step};
use support::*;

fn new_phone() -> Phone {
    parse_phone(&unique_phone())
}

fn referrer(user: &User) -> Referrer {
    Referrer {
        id: user.id,
        invite_code: user.invite_code.clone(),
    }
}

fn get_code_request(phone: &Phone) -> Request {
    post(json!({ "phone": phone.as_str() }))
}

fn send_code_request(phone: &Phone, code: &str) -> Request {
    post(json!({ "phone": phone.as_str(), "password": code }))
}

fn set_referrer_request(me: &User, invite_code: &str) -> Request {
    let body = json!({ "invite_code": invite_code }).to_string();
    let token = access_token(me.id);
    request(Method::POST, &body, Some(&token))
}

/// `code` sent to `phone` a moment ago, stored as get_code stores it.
async fn code_sent(otps: &MemoryOtps, phone: &Phone, code: &str) {
    let policy = OtpPolicy::default();
    let pending = PendingCode::new(phone.clone(), hasher().hash(phone, code), now(), &policy);
    assert_eq!(otps.issue(&pending, &policy, now()).await.unwrap(), None);
}

/// The step that has `user` enter the invite code of `top`, a user without a
/// referrer: another request's write, made just before the scripted call.
fn joins(users: &MemoryUsers, user: &User, top: &User) -> Step {
    let (users, user, top) = (users.clone(), user.clone(), top.clone());
    Step::run(async move {
        let written = users
            .set_referrer(user.id, &referrer(&top), top.id, now())
            .await;
        assert_eq!(written.unwrap(), ReferrerWrite::Set);
    })
}

// ---------------------------------------------------------------- set_referrer
// Paused tokio time: the backoff between walks passes at once.

/// Me enters B's code. Between my walk (B is the top) and my write, B joins
/// A: my write is refused because the top moved, and the second walk finds A.
#[tokio::test(start_paused = true)]
async fn a_top_that_gains_a_referrer_meanwhile_is_walked_again() {
    let (users, script) = (MemoryUsers::default(), Script::default());
    let (a, b, me) = (
        users.seed("AAAAAA"),
        users.seed("BBBBBB"),
        users.seed("MEMEME"),
    );
    script.at("set_referrer", 1, joins(&users, &b, &a));
    let endpoint = set_referrer_over(Scripted::new(users.clone(), &script));

    let answered = answer(
        endpoint
            .set_referrer(set_referrer_request(&me, "BBBBBB"))
            .await,
    );
    let message = "You have become referral of user with invite code BBBBBB";
    assert_eq!(answered, (200, json!({ "message": message })));
    assert_eq!(users.user(&me.phone).unwrap().referrer, Some(referrer(&b)));
    assert_eq!(users.user(&b.phone).unwrap().referrer, Some(referrer(&a)));
    assert_eq!(script.calls("set_referrer"), 2);
}

/// Me enters B's code while B enters mine, B's write first: mine is refused
/// (B, my chain's top, has a referrer now), and walking again finds me above
/// B — a circle, refused, nothing written.
#[tokio::test(start_paused = true)]
async fn a_move_that_closes_a_circle_is_refused_on_the_next_walk() {
    let (users, script) = (MemoryUsers::default(), Script::default());
    let (b, me) = (users.seed("BBBBBB"), users.seed("MEMEME"));
    script.at("set_referrer", 1, joins(&users, &b, &me));
    let endpoint = set_referrer_over(Scripted::new(users.clone(), &script));

    assert_error(
        answer(
            endpoint
                .set_referrer(set_referrer_request(&me, "BBBBBB"))
                .await,
        ),
        409,
        "referral_cycle",
    );
    assert_eq!(users.user(&me.phone).unwrap().referrer, None);
    assert_eq!(users.user(&b.phone).unwrap().referrer, Some(referrer(&me)));
    assert_eq!(script.calls("set_referrer"), 1);
}

/// The chain's top gains a referrer before each of my writes: after five
/// walks (MAX_WALKS) I get 503 and nothing is written; the backoff between
/// walks is at most 25 + 50 + 100 + 200 ms.
#[tokio::test(start_paused = true)]
async fn a_chain_that_keeps_moving_gets_503_after_five_walks() {
    let (users, script) = (MemoryUsers::default(), Script::default());
    let chain: Vec<User> = (0..6).map(|n| users.seed(&format!("TOP{n:03}"))).collect();
    let me = users.seed("MEMEME");
    for n in 1..=5 {
        script.at("set_referrer", n, joins(&users, &chain[n - 1], &chain[n]));
    }
    let endpoint = set_referrer_over(Scripted::new(users.clone(), &script));

    let started = tokio::time::Instant::now();
    assert_error(
        answer(
            endpoint
                .set_referrer(set_referrer_request(&me, "TOP000"))
                .await,
        ),
        503,
        "service_unavailable",
    );
    assert!(started.elapsed() <= Duration::from_millis(375));
    assert_eq!(script.calls("set_referrer"), 5);
    assert_eq!(users.user(&me.phone).unwrap().referrer, None);
    assert_eq!(users.referrals_of(chain[0].id, 100).await.unwrap(), vec![]);
}

// ---------------------------------------------------------------- send_code

/// The first invite code drawn is someone's already; later draws are fresh.
fn taken_then_fresh() -> InviteCode {
    static DRAWS: AtomicUsize = AtomicUsize::new(0);
    match DRAWS.fetch_add(1, Ordering::SeqCst) {
        0 => InviteCode::parse("Taken1").unwrap(),
        _ => InviteCode::generate(),
    }
}

#[tokio::test]
async fn a_taken_invite_code_is_redrawn() {
    let (otps, users, script): (MemoryOtps, MemoryUsers, Script) = Default::default();
    let owner = users.seed("Taken1");
    let phone = new_phone();
    code_sent(&otps, &phone, "1234").await;
    let endpoint = phone_auth::endpoints::SendCode {
        invite_codes: taken_then_fresh,
        ..send_code_over(otps.clone(), Scripted::new(users.clone(), &script))
    };

    let (status, body) = answer(endpoint.sign_in(send_code_request(&phone, "1234")).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(script.calls("create"), 2);
    let user = users.user(&phone).expect("the user was created");
    assert_ne!(user.invite_code.as_str(), "Taken1");
    assert_eq!(users.codes_claimed_by(&phone), vec![user.invite_code]);
    assert_eq!(
        users.codes_claimed_by(&owner.phone),
        vec![owner.invite_code]
    );
}

#[tokio::test]
async fn invite_codes_that_keep_colliding_get_503_and_keep_the_code() {
    let (otps, users, script): (MemoryOtps, MemoryUsers, Script) = Default::default();
    users.seed("Taken1");
    let phone = new_phone();
    code_sent(&otps, &phone, "1234").await;
    let endpoint = phone_auth::endpoints::SendCode {
        invite_codes: || InviteCode::parse("Taken1").unwrap(),
        ..send_code_over(otps.clone(), Scripted::new(users.clone(), &script))
    };

    assert_error(
        answer(endpoint.sign_in(send_code_request(&phone, "1234")).await),
        503,
        "service_unavailable",
    );
    assert_eq!(script.calls("create"), 5, "MAX_CREATE_TRIES draws");
    assert_eq!(users.user(&phone), None);
    assert!(otps.record(&phone).unwrap().pending.is_some(), "not used");
}

/// Two sign-ins of one phone with its correct code, both past the check, both
/// finding no user and both creating it (each waits at `create` until the
/// other got there too). One creates it; the other finds it on its next look.
/// The code is single use, so of the two only one signs in: the other is told
/// the code was used (400 code_invalid).
#[tokio::test]
async fn two_sign_ins_that_both_find_no_user_make_one() {
    let (otps, users, script): (MemoryOtps, MemoryUsers, Script) = Default::default();
    let phone = new_phone();
    code_sent(&otps, &phone, "1234").await;
    // Neither creates the user before both looked for it and found none.
    script.meet("create", &[1, 2]);
    let endpoint = send_code_over(otps.clone(), Scripted::new(users.clone(), &script));

    let (first, second) = tokio::join!(
        endpoint.sign_in(send_code_request(&phone, "1234")),
        endpoint.sign_in(send_code_request(&phone, "1234")),
    );
    let mut answers = [answer(first), answer(second)]
        .map(|(status, body)| (status, body["code"].as_str().map(str::to_string)));
    answers.sort();
    assert_eq!(answers, [(200, None), (400, Some("code_invalid".into()))]);
    assert_eq!(script.calls("create"), 2, "both created");
    assert_eq!(script.calls("id_of"), 3, "the loser looked again");
    let user = users.user(&phone).expect("the user exists");
    assert_eq!(users.codes_claimed_by(&phone), vec![user.invite_code]);
    assert_eq!(
        otps.record(&phone).unwrap().pending,
        None,
        "the code is used"
    );
}

/// The users store fails on sign-in, reading or writing, three times in a
/// row: each time 503, the code is still there and its check is given back
/// (attempts and failed checks), so the same code signs in once storage
/// works again. With three failed checks allowed a day, counting those 503s
/// would lock the phone; with three attempts a code, it would spend the code.
#[tokio::test]
async fn a_users_store_failure_is_503_and_the_same_code_works_after() {
    let policy = config(&[("OTP_MAX_FAILED_CHECKS", "3")])
        .otp_policy()
        .unwrap();
    for failing in ["id_of", "create"] {
        let (otps, users, script): (MemoryOtps, MemoryUsers, Script) = Default::default();
        let phone = new_phone();
        code_sent(&otps, &phone, "1234").await;
        for nth in 1..=3 {
            script.at(failing, nth, Step::Fail);
        }
        let endpoint = SendCode {
            otp_policy: policy.clone(),
            ..send_code_over(otps.clone(), Scripted::new(users.clone(), &script))
        };

        for _ in 0..3 {
            assert_error(
                answer(endpoint.sign_in(send_code_request(&phone, "1234")).await),
                503,
                "service_unavailable",
            );
            assert_eq!(users.user(&phone), None, "{failing}");
            let record = otps.record(&phone).unwrap();
            assert_eq!(record.failed_in(now(), &policy), 0, "{failing}");
            assert_eq!(record.pending.map(|p| p.attempts), Some(0), "{failing}");
        }

        let (status, body) = answer(endpoint.sign_in(send_code_request(&phone, "1234")).await);
        assert_eq!(status, 200, "{failing}: {body}");
        assert!(users.user(&phone).is_some(), "{failing}");
        assert_error(
            answer(endpoint.sign_in(send_code_request(&phone, "1234")).await),
            400,
            "code_invalid",
        );
    }
}

/// Using the code up fails after the user was created: 503, and the retry
/// with the same code finds the user and signs in.
#[tokio::test]
async fn a_failed_consume_is_503_and_the_retry_signs_in() {
    let (otps, users, script): (MemoryOtps, MemoryUsers, Script) = Default::default();
    let phone = new_phone();
    code_sent(&otps, &phone, "1234").await;
    script.at("consume", 1, Step::Fail);
    let endpoint = send_code_over(
        Scripted::new(otps.clone(), &script),
        Scripted::new(users.clone(), &script),
    );

    assert_error(
        answer(endpoint.sign_in(send_code_request(&phone, "1234")).await),
        503,
        "service_unavailable",
    );
    let created = users.user(&phone).expect("created before the code is used");
    assert!(otps.record(&phone).unwrap().pending.is_some());

    let (status, body) = answer(endpoint.sign_in(send_code_request(&phone, "1234")).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(script.calls("create"), 1);
    assert_eq!(users.user(&phone), Some(created));
    assert_eq!(otps.record(&phone).unwrap().pending, None);
}

// ---------------------------------------------------------------- get_code

/// The SMS is not sent: 503, and the code is taken back, so neither the
/// cooldown nor the window's count holds it against the next request.
#[tokio::test]
async fn an_unsent_sms_is_withdrawn_and_the_next_code_goes_at_once() {
    let (otps, sms, script): (MemoryOtps, MemorySms, Script) = Default::default();
    let phone = new_phone();
    script.at("send", 1, Step::Fail);
    let endpoint = get_code_over(
        otps.clone(),
        Scripted::new(sms.clone(), &script),
        MemoryCounters::default(),
    );

    assert_error(
        answer(endpoint.get_code(get_code_request(&phone)).await),
        503,
        "service_unavailable",
    );
    let record = otps.record(&phone).unwrap();
    assert_eq!((record.pending, record.sends), (None, 0));

    let (status, body) = answer(endpoint.get_code(get_code_request(&phone)).await);
    assert_eq!(status, 200, "{body}");
    let sent = sms.sent();
    assert_eq!(sent.len(), 1);
    let record = otps.record(&phone).unwrap();
    assert_eq!(record.sends, 1);
    let code: String = sent[0]
        .1
        .chars()
        .filter(char::is_ascii_digit)
        .take(4)
        .collect();
    assert!(hasher().matches(&phone, &code, &record.pending.unwrap().code_hash));
}

/// Storing the code takes effect but its answer is lost (the SDK gave up
/// after the write): 503 and no SMS, and the code is withdrawn like an
/// unsent one, so the next request is not held by the cooldown of a code
/// nobody received, nor is it counted in the window.
#[tokio::test]
async fn a_stored_code_whose_answer_was_lost_is_withdrawn() {
    let (otps, sms, script): (MemoryOtps, MemorySms, Script) = Default::default();
    let phone = new_phone();
    script.at("issue", 1, Step::LoseAnswer);
    let endpoint = get_code_over(
        Scripted::new(otps.clone(), &script),
        sms.clone(),
        MemoryCounters::default(),
    );

    assert_error(
        answer(endpoint.get_code(get_code_request(&phone)).await),
        503,
        "service_unavailable",
    );
    assert!(sms.sent().is_empty());
    let record = otps.record(&phone).unwrap();
    assert_eq!((record.pending, record.sends), (None, 0));

    let (status, body) = answer(endpoint.get_code(get_code_request(&phone)).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(sms.sent().len(), 1);
}

/// The SMS is not sent and taking the code back fails too: still 503, and
/// what is left is a code nobody received, counted in the window and holding
/// the cooldown — the phone waits 60 s for the next code.
#[tokio::test]
async fn an_unsent_sms_whose_withdraw_fails_is_503_and_holds_the_cooldown() {
    let (otps, sms, script): (MemoryOtps, MemorySms, Script) = Default::default();
    let phone = new_phone();
    script.at("send", 1, Step::Fail);
    script.at("withdraw", 1, Step::Fail);
    let endpoint = get_code_over(
        Scripted::new(otps.clone(), &script),
        Scripted::new(sms.clone(), &script),
        MemoryCounters::default(),
    );

    assert_error(
        answer(endpoint.get_code(get_code_request(&phone)).await),
        503,
        "service_unavailable",
    );
    assert_eq!(script.calls("withdraw"), 1);
    let record = otps.record(&phone).unwrap();
    assert!(record.pending.is_some());
    assert_eq!(record.sends, 1);

    assert_error(
        answer(endpoint.get_code(get_code_request(&phone)).await),
        429,
        "resend_too_soon",
    );
    assert!(sms.sent().is_empty());
}

// ---------------------------------------------------------------- get_code's budgets

/// The budgets of a request for `phone` from the address `get_code_request` gives.
fn counters_for(phone: &Phone, overrides: &[(&str, &str)]) -> Counters {
    let config = config(overrides);
    config
        .send_limits(&config.phone_policy().unwrap())
        .unwrap()
        .counters(Source::Unknown, phone.region(), now())
}

/// A country's budget is spent (another request took its last unit): the
/// code is withdrawn, the source's and the service's units are given back,
/// and no SMS goes out.
#[tokio::test]
async fn a_spent_budget_withdraws_the_code_and_gives_the_others_back() {
    let limits = [("SMS_DAILY_BUDGET_BY_REGION", "RU=1")];
    let (otps, sms, counters) = (
        MemoryOtps::default(),
        MemorySms::default(),
        MemoryCounters::default(),
    );
    let phone = new_phone();
    let region = counters_for(&phone, &limits).region.unwrap();
    assert!(counters.take(&region).await.unwrap());
    let endpoint = get_code_with(&limits, otps.clone(), sms.clone(), counters.clone());

    assert_error(
        answer(endpoint.get_code(direct_get_code(&phone)).await),
        429,
        "region_budget_exhausted",
    );
    assert!(sms.sent().is_empty());
    let record = otps.record(&phone).unwrap();
    assert_eq!((record.pending, record.sends), (None, 0), "withdrawn");
    assert_eq!(
        counters.all_taken(),
        [(region.key.clone(), 1)].into(),
        "only the other request's unit"
    );
}

/// A direct invoke (no source address), so the test knows the source's key.
fn direct_get_code(phone: &Phone) -> Request {
    request_without_ip(
        Method::POST,
        &json!({ "phone": phone.as_str() }).to_string(),
        None,
    )
}

/// The SMS fails after every budget was taken: all are given back.
#[tokio::test]
async fn an_unsent_sms_gives_every_budget_back() {
    let limits = [("SMS_DAILY_BUDGET_BY_REGION", "RU=5")];
    let (otps, sms, counters, script) = (
        MemoryOtps::default(),
        MemorySms::default(),
        MemoryCounters::default(),
        Script::default(),
    );
    let phone = new_phone();
    script.at("send", 1, Step::Fail);
    let endpoint = get_code_with(
        &limits,
        otps.clone(),
        Scripted::new(sms.clone(), &script),
        Scripted::new(counters.clone(), &script),
    );

    assert_error(
        answer(endpoint.get_code(direct_get_code(&phone)).await),
        503,
        "service_unavailable",
    );
    assert_eq!((script.calls("take"), script.calls("give_back")), (3, 3));
    assert!(
        counters.all_taken().is_empty(),
        "{:?}",
        counters.all_taken()
    );
    assert_eq!(otps.record(&phone).unwrap().sends, 0);
    // And the next request finds every budget as it was.
    assert_eq!(
        answer(endpoint.get_code(direct_get_code(&phone)).await).0,
        200
    );
    let all: Vec<_> = counters_for(&phone, &limits)
        .all()
        .map(|c| counters.taken(c))
        .collect();
    assert_eq!(all, [1, 1, 1]);
}

/// Storage fails for one budget: 503, and nothing stays taken or stored.
#[tokio::test]
async fn a_budget_storage_failure_is_503_and_leaves_nothing_taken() {
    let (otps, sms, counters, script) = (
        MemoryOtps::default(),
        MemorySms::default(),
        MemoryCounters::default(),
        Script::default(),
    );
    let phone = new_phone();
    script.at("take", 1, Step::Fail);
    let endpoint = get_code_over(
        otps.clone(),
        sms.clone(),
        Scripted::new(counters.clone(), &script),
    );

    assert_error(
        answer(endpoint.get_code(direct_get_code(&phone)).await),
        503,
        "service_unavailable",
    );
    assert!(sms.sent().is_empty());
    assert!(counters.all_taken().is_empty());
    assert_eq!(otps.record(&phone).unwrap().pending, None);
}

/// The phone's own rules refuse (a code is pending from a moment ago): the
/// budgets taken alongside are given back.
#[tokio::test]
async fn a_refused_phone_gives_the_budgets_back() {
    let (otps, sms, counters) = (
        MemoryOtps::default(),
        MemorySms::default(),
        MemoryCounters::default(),
    );
    let phone = new_phone();
    code_sent(&otps, &phone, "1234").await;
    let endpoint = get_code_over(otps.clone(), sms.clone(), counters.clone());

    assert_error(
        answer(endpoint.get_code(direct_get_code(&phone)).await),
        429,
        "resend_too_soon",
    );
    assert!(sms.sent().is_empty());
    assert!(counters.all_taken().is_empty());
    assert_eq!(
        otps.record(&phone).unwrap().sends,
        1,
        "the earlier code stays"
    );
}

/// A test number never reaches the SMS sender nor any budget — even with the
/// service's budget at 0 — and signs in with its fixed code.
#[tokio::test]
async fn a_test_number_never_reaches_the_sms_sender() {
    let phone = new_phone();
    let numbers = format!("{}:4321", phone.as_str());
    let config = [
        ("TEST_PHONE_NUMBERS", numbers.as_str()),
        ("TEST_PHONE_NUMBERS_EXPIRE", "2099-12-31"),
        ("SMS_DAILY_BUDGET", "0"),
    ];
    let (otps, sms, counters, users, script) = (
        MemoryOtps::default(),
        MemorySms::default(),
        MemoryCounters::default(),
        MemoryUsers::default(),
        Script::default(),
    );
    let get_code = get_code_with(
        &config,
        otps.clone(),
        Scripted::new(sms.clone(), &script),
        Scripted::new(counters.clone(), &script),
    );
    for _ in 0..2 {
        assert_eq!(
            answer(get_code.get_code(get_code_request(&phone)).await).0,
            200
        );
        let (status, body) = answer(
            send_code_over(otps.clone(), users.clone())
                .sign_in(send_code_request(&phone, "4321"))
                .await,
        );
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!((script.calls("send"), script.calls("take")), (0, 0));
    assert!(sms.sent().is_empty());
    assert!(counters.all_taken().is_empty());
    // An ordinary phone at the same moment: the budget of 0 refuses it.
    assert_error(
        answer(get_code.get_code(get_code_request(&new_phone())).await),
        503,
        "sms_budget_exhausted",
    );
}

/// Wrong codes up to the limit lock the phone for get_code (no SMS) and
/// send_code, whichever code comes next.
#[tokio::test]
async fn a_locked_phone_gets_no_sms_and_no_check() {
    let lockout = [("OTP_MAX_FAILED_CHECKS", "3")];
    let (otps, sms, counters, users) = (
        MemoryOtps::default(),
        MemorySms::default(),
        MemoryCounters::default(),
        MemoryUsers::default(),
    );
    let phone = new_phone();
    let get_code = get_code_with(&lockout, otps.clone(), sms.clone(), counters.clone());
    let send_code = phone_auth::endpoints::SendCode {
        otp_policy: config(&lockout).otp_policy().unwrap(),
        ..send_code_over(otps.clone(), users.clone())
    };
    assert_eq!(
        answer(get_code.get_code(get_code_request(&phone)).await).0,
        200
    );
    let code: String = sms.sent()[0]
        .1
        .chars()
        .filter(char::is_ascii_digit)
        .take(4)
        .collect();
    let wrong = if code == "0000" { "1111" } else { "0000" };
    for _ in 0..3 {
        assert_error(
            answer(send_code.sign_in(send_code_request(&phone, wrong)).await),
            400,
            "code_invalid",
        );
    }
    assert_error(
        answer(send_code.sign_in(send_code_request(&phone, &code)).await),
        429,
        "phone_locked",
    );
    assert_error(
        answer(get_code.get_code(get_code_request(&phone)).await),
        429,
        "phone_locked",
    );
    assert_eq!(sms.sent().len(), 1);
    assert_eq!(users.user(&phone), None);
}
