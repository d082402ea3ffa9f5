//! Concurrent joins into one referral tree: a viral campaign's popular
//! referrer. Every join condition-checks the tree's root in its transaction,
//! so DynamoDB lets one of the joins in flight at a time through and cancels
//! the others (TransactionConflict); set-referrer walks again after a
//! jittered backoff, up to 5 walks, then answers 503.
//!
//! `BENCH_JOIN_PROCESSES` set-referrer processes (Lambda runs one request per
//! process at a time; 8 by default) each make `BENCH_JOINS_PER_PROCESS` joins
//! (25) back to back, all entering the same invite code. The figures: joins
//! that succeeded per second of wall time, and the share that ended in 503.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::{percentile, sorted_ms};
use crate::runtime::Function;
use crate::{Fleet, Phones, Res, Settings, User, call, events};

pub struct Joins {
    pub processes: usize,
    pub attempted: usize,
    pub succeeded: usize,
    pub unavailable: usize,
    /// Walks repeated after a TransactionConflict or a moved chain top.
    pub walks_repeated: usize,
    pub wall: Duration,
    pub durations: Vec<Duration>,
}

impl Joins {
    pub fn to_json(&self) -> Value {
        let sorted = sorted_ms(self.durations.iter().copied());
        json!({
            "processes": self.processes,
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "unavailable_503": self.unavailable,
            "walks_repeated": self.walks_repeated,
            "share_503": self.unavailable as f64 / self.attempted.max(1) as f64,
            "wall_seconds": self.wall.as_secs_f64(),
            "succeeded_per_second": self.succeeded as f64 / self.wall.as_secs_f64(),
            "join_ms_p50": percentile(&sorted, 50.0),
            "join_ms_p99": percentile(&sorted, 99.0),
        })
    }
}

pub async fn joins_phase(
    settings: &Settings,
    env: &[(String, String)],
    helpers: &mut Fleet,
    phones: &mut Phones,
) -> Res<Joins> {
    let processes = crate::env_number("BENCH_JOIN_PROCESSES", 8)?;
    let per_process = crate::env_number("BENCH_JOINS_PER_PROCESS", 25)?;
    eprintln!(
        "bench: {processes} processes × {per_process} concurrent joins into one tree (signing the joiners up first)"
    );
    let root = helpers.sign_in(&phones.next()).await?;
    let root_code = helpers.invite_code(&root).await?;
    let mut queues: Vec<Vec<User>> = Vec::with_capacity(processes);
    for _ in 0..processes {
        let mut queue = Vec::with_capacity(per_process);
        for _ in 0..per_process {
            queue.push(helpers.sign_in(&phones.next()).await?);
        }
        queues.push(queue);
    }
    let mut workers = Vec::with_capacity(processes);
    for i in 0..processes {
        let mut function = Function::spawn(
            "set-referrer",
            &settings.binary("set-referrer"),
            env,
            &settings.log(&format!("set-referrer-join-{i}")),
        )
        .await?;
        function.ready().await?;
        workers.push(function);
    }

    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (mut function, queue) in workers.into_iter().zip(queues) {
        let code = root_code.clone();
        running.spawn(async move {
            let mut outcomes = Vec::with_capacity(queue.len());
            for joiner in &queue {
                let event = events::set_referrer(&joiner.access, &code);
                match call(&mut function, event).await {
                    Ok((duration, reply)) => outcomes.push((duration, reply.status, reply.body)),
                    Err(err) => return (function, Err(err), Instant::now()),
                }
            }
            (function, Ok(outcomes), Instant::now())
        });
    }
    let (mut outcomes, mut failure, mut finished) = (Vec::new(), None, started);
    while let Some(done) = running.join_next().await {
        let (function, result, at) = done?;
        finished = finished.max(at);
        function.stop().await;
        match result {
            Ok(mut list) => outcomes.append(&mut list),
            Err(err) => failure = Some(err),
        }
    }
    let wall = finished - started;
    if let Some(err) = failure {
        return Err(err);
    }

    let mut joins = Joins {
        processes,
        attempted: 0,
        succeeded: 0,
        unavailable: 0,
        walks_repeated: 0,
        wall,
        durations: Vec::new(),
    };
    for (duration, status, body) in outcomes {
        joins.attempted += 1;
        joins.durations.push(duration);
        match status {
            200 => joins.succeeded += 1,
            503 => joins.unavailable += 1,
            _ => return Err(format!("a join answered {status}: {body}").into()),
        }
    }
    // set-referrer logs each walk it repeats after a moved chain or a conflict.
    for i in 0..processes {
        let log = std::fs::read_to_string(settings.log(&format!("set-referrer-join-{i}")))?;
        joins.walks_repeated += log.matches("walking again").count();
    }
    // Every success is among the root's referrals, and nothing else is (all
    // their pages: the profile shows only the first PROFILE_REFERRALS_MAX).
    let referrals = helpers.count_referrals(&root).await?;
    if referrals != joins.succeeded {
        return Err(format!(
            "{} joins succeeded, the root has {referrals} referrals",
            joins.succeeded
        )
        .into());
    }
    Ok(joins)
}
