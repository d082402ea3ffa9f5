//! Figures: percentiles, `summary.json` and the printed table.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::recorder::Tally;
use crate::{BASELINE, measured};

pub struct ColdSample {
    pub init: Duration,
    pub first_invoke: Duration,
    /// CPU time of each phase (all threads).
    pub init_cpu: Duration,
    pub first_invoke_cpu: Duration,
    pub peak_rss_kb: u64,
}

pub struct Warm {
    pub durations: Vec<Duration>,
    /// CPU time over all `durations`' invocations (all threads).
    pub cpu: Duration,
    pub peak_rss_kb: u64,
}

pub struct Flow {
    pub key: String,
    pub what: String,
    pub tally: Tally,
    /// The last invocation of the flow, for reference.
    pub duration: Duration,
}

/// function → (bootstrap bytes, zip bytes)
type PerFunction = BTreeMap<String, (Option<u64>, Option<u64>)>;

#[derive(Default)]
pub struct Sizes {
    pub by_arch: BTreeMap<String, PerFunction>,
}

#[derive(Default)]
pub struct Results {
    pub cold: BTreeMap<String, Vec<ColdSample>>,
    /// Cold starts against DynamoDB and SNS behind TLS, as in AWS.
    pub cold_tls: BTreeMap<String, Vec<ColdSample>>,
    /// As `cold_tls`, each first invocation at a 128 MB function's share of
    /// a CPU (cpu_share.rs); empty where the machine cannot limit it.
    pub cold_128mb: BTreeMap<String, Vec<ColdSample>>,
    /// That share's settings and how often it held the processes back.
    pub cpu_share: Value,
    pub warm: BTreeMap<String, Warm>,
    pub flows: Vec<Flow>,
    pub dynamodb_round_trips: Vec<Duration>,
    pub sizes: Sizes,
    pub joins: Option<crate::joins::Joins>,
    pub stream: Option<crate::stream::Throughput>,
}

/// The functions' memory size (template.yaml's `MemorySize`), which both
/// the cost estimate and the 128 MB cold-start model assume.
const LAMBDA_MEMORY_MB: f64 = 128.0;

/// The share of a vCPU a 128 MB function gets while it handles an
/// invocation: Lambda gives one full vCPU at 1,769 MB, in proportion below.
/// Init is not throttled, so only the invocation's CPU is stretched.
pub const CPU_SHARE_AT_128_MB: f64 = LAMBDA_MEMORY_MB / 1769.0;

/// A cold start as a 128 MB function would see it: init and the first
/// invocation as measured, plus the time the first invocation's CPU work
/// takes at that share beyond what it took here at full speed. A model
/// (this machine cannot throttle a process's CPU), for comparing builds.
fn cold_start_at_128_mb(sample: &ColdSample) -> Duration {
    sample.init
        + sample.first_invoke
        + sample
            .first_invoke_cpu
            .mul_f64(1.0 / CPU_SHARE_AT_128_MB - 1.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of already sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted_ms(values: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut v: Vec<f64> = values.map(ms).collect();
    v.sort_by(f64::total_cmp);
    v
}

pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn distribution(sorted: &[f64], points: &[(&str, f64)]) -> Value {
    let mut out = Map::new();
    for (name, p) in points {
        out.insert(name.to_string(), json!(round(percentile(sorted, *p), 3)));
    }
    out.insert("n".into(), json!(sorted.len()));
    Value::Object(out)
}

/// A cold-start phase's figures: its median and p90.
fn median_and_p90(sorted: &[f64]) -> Value {
    distribution(sorted, &[("median", 50.0), ("p90", 90.0)])
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

pub fn sizes(x86_64: &Path, arm64: Option<&Path>) -> Sizes {
    let mut sizes = Sizes::default();
    let dirs = [("x86_64", Some(x86_64)), ("arm64", arm64)];
    for (arch, dir) in dirs {
        let Some(dir) = dir else { continue };
        let per_function = [BASELINE]
            .into_iter()
            .chain(measured())
            .map(|name| {
                let d = dir.join(name);
                (
                    name.to_string(),
                    (
                        file_size(&d.join("bootstrap")),
                        file_size(&d.join("bootstrap.zip")),
                    ),
                )
            })
            .collect();
        sizes.by_arch.insert(arch.to_string(), per_function);
    }
    sizes
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_mb": memory_mb,
        "kernel": kernel.trim(),
        "arch": std::env::consts::ARCH,
    })
}

// On-demand prices, us-east-1, as used for the estimate (see docs/performance.md).
const DDB_WRITE_PER_MILLION_UNITS: f64 = 0.625;
const DDB_READ_PER_MILLION_UNITS: f64 = 0.125;
const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
/// arm64, per GB-second; × 0.125 GB / 1000 = $0.0000000016667 per ms at 128 MB.
const LAMBDA_ARM64_PER_GB_SECOND: f64 = 0.000_013_333_4;
const LAMBDA_MEMORY_GB: f64 = LAMBDA_MEMORY_MB / 1024.0;
const HTTP_API_PER_MILLION: f64 = 1.00;

/// Dollars per million runs of a flow made of `invocations`, with DynamoDB work `tally`.
fn cost_per_million(tally: &Tally, invocations: &[(&str, f64)]) -> Value {
    let dynamodb = tally.read_units * DDB_READ_PER_MILLION_UNITS
        + (tally.write_units + f64::from(tally.failed_conditions)) * DDB_WRITE_PER_MILLION_UNITS;
    let billed_ms: f64 = invocations.iter().map(|(_, p50)| p50.ceil().max(1.0)).sum();
    let lambda_duration = billed_ms * LAMBDA_MEMORY_GB / 1000.0 * LAMBDA_ARM64_PER_GB_SECOND * 1e6;
    let lambda_requests = invocations.len() as f64 * LAMBDA_PER_MILLION_REQUESTS;
    let http_api = invocations.len() as f64 * HTTP_API_PER_MILLION;
    json!({
        "dynamodb": round(dynamodb, 4),
        "lambda_requests": round(lambda_requests, 4),
        "lambda_duration": round(lambda_duration, 4),
        "lambda_billed_ms_assumed": billed_ms,
        "http_api": round(http_api, 4),
        "total": round(dynamodb + lambda_requests + lambda_duration + http_api, 4),
        "excludes": "SMS delivery (per-country SNS price), data transfer, CloudWatch Logs, X-Ray",
    })
}

pub fn summary(results: &Results, build: &Value) -> Value {
    let baseline_init = sorted_ms(
        results
            .cold
            .get(BASELINE)
            .into_iter()
            .flatten()
            .map(|s| s.init),
    );
    let baseline_median = percentile(&baseline_init, 50.0);

    let mut init = Map::new();
    let mut first_invoke = Map::new();
    let mut first_invoke_median = Map::new();
    let mut init_ratio = Map::new();
    let mut init_ratio_max = 0.0f64;
    let mut cold_rss = Map::new();
    for (name, samples) in &results.cold {
        let inits = sorted_ms(samples.iter().map(|s| s.init));
        let firsts = sorted_ms(samples.iter().map(|s| s.first_invoke));
        init.insert(name.clone(), median_and_p90(&inits));
        first_invoke.insert(name.clone(), median_and_p90(&firsts));
        first_invoke_median.insert(name.clone(), json!(round(percentile(&firsts, 50.0), 3)));
        cold_rss.insert(
            name.clone(),
            json!(samples.iter().map(|s| s.peak_rss_kb).max()),
        );
        let ratio = percentile(&inits, 50.0) / baseline_median;
        init_ratio.insert(name.clone(), json!(round(ratio, 3)));
        if name != BASELINE {
            init_ratio_max = init_ratio_max.max(ratio);
        }
    }

    let mut init_tls = Map::new();
    let mut first_invoke_tls = Map::new();
    let mut cold_cpu_tls = Map::new();
    let mut cold_start_128_mb = Map::new();
    for (name, samples) in &results.cold_tls {
        let phase_ms = |phase: fn(&ColdSample) -> Duration| sorted_ms(samples.iter().map(phase));
        let median_ms = |phase| json!(round(percentile(&phase_ms(phase), 50.0), 3));
        init_tls.insert(name.clone(), median_and_p90(&phase_ms(|s| s.init)));
        first_invoke_tls.insert(name.clone(), median_and_p90(&phase_ms(|s| s.first_invoke)));
        cold_cpu_tls.insert(
            name.clone(),
            json!({
                "init": median_ms(|s| s.init_cpu),
                "first_invoke": median_ms(|s| s.first_invoke_cpu),
            }),
        );
        cold_start_128_mb.insert(name.clone(), median_ms(cold_start_at_128_mb));
    }

    // Measured: init at full speed, the first invocation at 128 MB's share.
    let mut cold_start_128_mb_measured = Map::new();
    let mut first_invoke_128_mb = Map::new();
    for (name, samples) in &results.cold_128mb {
        let cold_starts = sorted_ms(samples.iter().map(|s| s.init + s.first_invoke));
        let firsts = sorted_ms(samples.iter().map(|s| s.first_invoke));
        cold_start_128_mb_measured.insert(name.clone(), median_and_p90(&cold_starts));
        first_invoke_128_mb.insert(name.clone(), median_and_p90(&firsts));
    }

    let mut warm = Map::new();
    let mut warm_p99 = Map::new();
    let mut warm_p50 = BTreeMap::new();
    let mut warm_cpu = Map::new();
    let mut peak_rss = Map::new();
    let mut peak_rss_max = 0u64;
    for (name, w) in &results.warm {
        let sorted = sorted_ms(w.durations.iter().copied());
        warm.insert(
            name.clone(),
            distribution(
                &sorted,
                &[("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)],
            ),
        );
        warm_p99.insert(name.clone(), json!(round(percentile(&sorted, 99.0), 3)));
        warm_p50.insert(name.clone(), percentile(&sorted, 50.0));
        let per_invocation = ms(w.cpu) / w.durations.len().max(1) as f64;
        warm_cpu.insert(name.clone(), json!(round(per_invocation, 3)));
        let cold_peak = results
            .cold
            .get(name)
            .and_then(|s| s.iter().map(|s| s.peak_rss_kb).max())
            .unwrap_or(0);
        let peak = w.peak_rss_kb.max(cold_peak);
        peak_rss.insert(name.clone(), json!(peak));
        if name != BASELINE {
            peak_rss_max = peak_rss_max.max(peak);
        }
    }

    let round_trips = sorted_ms(results.dynamodb_round_trips.iter().copied());

    // Sizes: the deployed architecture (arm64) where it was built, x86_64 otherwise.
    let deployed_arch = if results.sizes.by_arch.contains_key("arm64") {
        "arm64"
    } else {
        "x86_64"
    };
    let mut zip_bytes = Map::new();
    let mut zip_bytes_max = 0u64;
    if let Some(per_function) = results.sizes.by_arch.get(deployed_arch) {
        for (name, (_, zip)) in per_function {
            zip_bytes.insert(name.clone(), json!(zip));
            if name != BASELINE {
                zip_bytes_max = zip_bytes_max.max(zip.unwrap_or(0));
            }
        }
    }
    let mut bootstrap_by_arch = Map::new();
    let mut zip_by_arch = Map::new();
    for (arch, per_function) in &results.sizes.by_arch {
        bootstrap_by_arch.insert(
            arch.clone(),
            per_function
                .iter()
                .map(|(n, (b, _))| (n.clone(), json!(b)))
                .collect(),
        );
        zip_by_arch.insert(
            arch.clone(),
            per_function
                .iter()
                .map(|(n, (_, z))| (n.clone(), json!(z)))
                .collect(),
        );
    }

    let mut ddb_requests = Map::new();
    let mut ddb_flows = Map::new();
    for flow in &results.flows {
        ddb_requests.insert(flow.key.clone(), json!(flow.tally.requests));
        let mut detail = flow.tally.to_json();
        detail["what"] = json!(flow.what);
        detail["last_invocation_ms"] = json!(round(ms(flow.duration), 3));
        ddb_flows.insert(flow.key.clone(), detail);
    }
    let p50 = |name: &str| warm_p50.get(name).copied().unwrap_or(f64::NAN);
    let flow_tally = |key: &str| {
        results
            .flows
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.tally.clone())
            .unwrap_or_default()
    };
    let cost = json!({
        "usd_per_million_sign_ups": cost_per_million(
            &flow_tally("sign_up"),
            &[("get-code", p50("get-code")), ("send-code", p50("send-code"))],
        ),
        "usd_per_million_returning_sign_ins": cost_per_million(
            &flow_tally("sign_in_returning"),
            &[("get-code", p50("get-code")), ("send-code", p50("send-code"))],
        ),
        // seed-004's two steps. Warm latency is measured for step 1 only;
        // step 2 is send-code's work (plus, by default, one GetItem), so
        // send-code's p50 stands in for it.
        "usd_per_million_registrations": cost_per_million(
            &flow_tally("register"),
            &[
                ("register", p50("register")),
                ("register step 2 ≈ send-code", p50("send-code")),
            ],
        ),
        "usd_per_million_logins": cost_per_million(
            &flow_tally("login"),
            &[
                ("login", p50("login")),
                ("login step 2 ≈ send-code", p50("send-code")),
            ],
        ),
        "usd_per_million_codes": cost_per_million(
            &flow_tally("get_code"),
            &[("get-code", p50("get-code"))],
        ),
        "usd_per_million_refused_codes": cost_per_million(
            &flow_tally("get_code_refused"),
            &[("get-code", p50("get-code"))],
        ),
        "usd_per_million_wrong_codes": cost_per_million(
            &flow_tally("send_code_wrong"),
            &[("send-code", p50("send-code"))],
        ),
        "prices": {
            "dynamodb_write_per_million_units": DDB_WRITE_PER_MILLION_UNITS,
            "dynamodb_read_per_million_units": DDB_READ_PER_MILLION_UNITS,
            "lambda_per_million_requests": LAMBDA_PER_MILLION_REQUESTS,
            "lambda_arm64_per_gb_second": LAMBDA_ARM64_PER_GB_SECOND,
            "lambda_memory_mb": 128,
            "http_api_per_million_requests": HTTP_API_PER_MILLION,
        },
    });

    json!({
        "schema": 1,
        "generated_at_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "machine": machine(),
        "build": build,
        "init_ratio_max": round(init_ratio_max, 3),
        "init_ratio": init_ratio,
        "init_ms": init,
        "first_invoke_ms": first_invoke,
        "first_invoke_ms_median": first_invoke_median,
        "init_tls_ms": init_tls,
        "first_invoke_tls_ms": first_invoke_tls,
        "cold_cpu_tls_ms": cold_cpu_tls,
        "cold_start_128mb_model_ms": cold_start_128_mb,
        "cold_start_128mb_ms": cold_start_128_mb_measured,
        "first_invoke_128mb_ms": first_invoke_128_mb,
        "cpu_share": results.cpu_share,
        "warm_ms": warm,
        "warm_cpu_ms": warm_cpu,
        "warm_p99_ms": warm_p99,
        "dynamodb_local_get_item_ms": distribution(&round_trips, &[("p50", 50.0), ("p99", 99.0)]),
        "peak_rss_kb": peak_rss,
        "peak_rss_kb_cold": cold_rss,
        "peak_rss_kb_max": peak_rss_max,
        "zip_arch": deployed_arch,
        "zip_bytes": zip_bytes,
        "zip_bytes_max": zip_bytes_max,
        "zip_bytes_by_arch": zip_by_arch,
        "bootstrap_bytes_by_arch": bootstrap_by_arch,
        "ddb_requests": ddb_requests,
        "ddb_flows": ddb_flows,
        "cost": cost,
        "joins_into_one_tree": results.joins.as_ref().map(crate::joins::Joins::to_json),
        "stream_consumer": results.stream.as_ref().map(crate::stream::Throughput::to_json),
    })
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

fn kib(v: &Value) -> String {
    v.as_u64()
        .map(|b| format!("{:.0}", b as f64 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

/// The Markdown table `make bench` prints (and docs/performance.md shows).
pub fn table(s: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "| function | init ms median / p90 | init ÷ baseline | first invoke ms median / p90 \
         | TLS to DynamoDB and SNS, ms median: init / first invoke | CPU ms with TLS: init / first invoke \
         | cold start at 128 MB, ms: measured median / p90 / modelled | warm ms p50 / p99 | warm CPU ms per request | peak RSS MiB \
         | bootstrap KiB arm64 / x86_64 | zip KiB arm64 / x86_64 |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for name in [BASELINE].into_iter().chain(measured()) {
        let init = &s["init_ms"][name];
        let first = &s["first_invoke_ms"][name];
        let warm = &s["warm_ms"][name];
        let rss = s["peak_rss_kb"][name]
            .as_u64()
            .map(|kb| format!("{:.1}", kb as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {name} | {} / {} | {} | {} / {} | {} / {} | {} / {} | {} / {} / {} | {} / {} | {} | {rss} | {} / {} | {} / {} |\n",
            f(&init["median"]),
            f(&init["p90"]),
            f(&s["init_ratio"][name]),
            f(&first["median"]),
            f(&first["p90"]),
            f(&s["init_tls_ms"][name]["median"]),
            f(&s["first_invoke_tls_ms"][name]["median"]),
            f(&s["cold_cpu_tls_ms"][name]["init"]),
            f(&s["cold_cpu_tls_ms"][name]["first_invoke"]),
            f(&s["cold_start_128mb_ms"][name]["median"]),
            f(&s["cold_start_128mb_ms"][name]["p90"]),
            f(&s["cold_start_128mb_model_ms"][name]),
            f(&warm["p50"]),
            f(&warm["p99"]),
            f(&s["warm_cpu_ms"][name]),
            kib(&s["bootstrap_bytes_by_arch"]["arm64"][name]),
            kib(&s["bootstrap_bytes_by_arch"]["x86_64"][name]),
            kib(&s["zip_bytes_by_arch"]["arm64"][name]),
            kib(&s["zip_bytes_by_arch"]["x86_64"][name]),
        ));
    }
    let rtt = &s["dynamodb_local_get_item_ms"];
    out.push_str(&format!(
        "\nDynamoDB Local GetItem round trip (no SDK): p50 {} ms, p99 {} ms\n\n",
        f(&rtt["p50"]),
        f(&rtt["p99"])
    ));
    out.push_str(
        "| flow | DynamoDB requests | operations | read units | write units | max in flight |\n",
    );
    out.push_str("|---|---|---|---|---|---|\n");
    if let Some(flows) = s["ddb_flows"].as_object() {
        for (key, flow) in flows {
            let operations = flow["operations"]
                .as_object()
                .map(|ops| {
                    ops.iter()
                        .map(|(op, n)| format!("{op} ×{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "| {key} | {} | {operations} | {} | {} | {} |\n",
                flow["requests"], flow["read_units"], flow["write_units"], flow["max_in_flight"]
            ));
        }
    }
    let cost = &s["cost"];
    out.push_str(&format!(
        "\nUSD per million: sign-ups {} (DynamoDB {}), returning sign-ins {} (DynamoDB {}); SMS excluded\n",
        cost["usd_per_million_sign_ups"]["total"],
        cost["usd_per_million_sign_ups"]["dynamodb"],
        cost["usd_per_million_returning_sign_ins"]["total"],
        cost["usd_per_million_returning_sign_ins"]["dynamodb"],
    ));
    out.push_str(&format!(
        "USD per million (seed-004): registrations {} (DynamoDB {}), logins {} (DynamoDB {}); step 2 billed at send-code's p50; SMS excluded\n",
        cost["usd_per_million_registrations"]["total"],
        cost["usd_per_million_registrations"]["dynamodb"],
        cost["usd_per_million_logins"]["total"],
        cost["usd_per_million_logins"]["dynamodb"],
    ));
    out.push_str(&format!(
        "USD per million: codes sent {} (DynamoDB {}), codes refused {}, wrong codes {}; SMS excluded\n",
        cost["usd_per_million_codes"]["total"],
        cost["usd_per_million_codes"]["dynamodb"],
        cost["usd_per_million_refused_codes"]["total"],
        cost["usd_per_million_wrong_codes"]["total"],
    ));
    // Issue 8's bounds: refresh at most 2 requests, send_code one write more
    // than before sessions (the session's PutItem).
    let requests = &s["ddb_requests"];
    out.push_str(&format!(
        "DynamoDB requests: refresh {} (retry within the grace period {}, reuse {}); send_code {} for a new user, {} for a returning one\n",
        requests["refresh"],
        requests["refresh_grace"],
        requests["refresh_reused"],
        requests["send_code_new_user"],
        requests["send_code_returning"],
    ));
    out.push_str(&format!(
        "DynamoDB requests (seed-004): register {} (step 2 {}, refused {}), login {} (step 2 {}, refused {}), profile GET {} ({} with 100 invited), PATCH {}\n",
        requests["register"],
        requests["register_step_2"],
        requests["register_refused"],
        requests["login"],
        requests["login_step_2"],
        requests["login_refused"],
        requests["client_profile"],
        requests["client_profile_100"],
        requests["update_client_profile"],
    ));
    out.push_str(&format!(
        "DynamoDB requests (referral pages): list-referrals {} with 0 referrals, {} for the first of 100, {} for the next page\n",
        requests["list_referrals_empty"],
        requests["list_referrals_first"],
        requests["list_referrals_next"],
    ));
    let joins = &s["joins_into_one_tree"];
    out.push_str(&format!(
        "Concurrent joins into one tree ({} processes): {} of {} succeeded, {}/s, {} walks repeated; {} answered 503 ({:.1}%); p50 {} ms, p99 {} ms\n",
        joins["processes"],
        joins["succeeded"],
        joins["attempted"],
        f(&joins["succeeded_per_second"]),
        joins["walks_repeated"],
        joins["unavailable_503"],
        joins["share_503"].as_f64().unwrap_or(f64::NAN) * 100.0,
        f(&joins["join_ms_p50"]),
        f(&joins["join_ms_p99"]),
    ));
    let stream = &s["stream_consumer"];
    out.push_str(&format!(
        "Stream consumer (publish-events, batches of {}): {} records ({} users' items) in {} batches → {} events in {} PutEvents requests; {}/s events, {}/s records of busy time ({} s busy, {} s wall); DynamoDB {} requests ({} per event)\n",
        stream["batch_size"],
        stream["records"],
        stream["user_records"],
        stream["batches"],
        stream["events_published"],
        stream["put_events_requests"],
        f(&stream["events_per_second"]),
        f(&stream["records_per_second"]),
        f(&stream["busy_s"]),
        f(&stream["wall_s"]),
        stream["dynamodb"]["requests"],
        f(&stream["dynamodb_requests_per_event"]),
    ));
    out.push_str(&format!(
        "init ratio max {} · peak RSS max {} KiB · zip max {} bytes ({})\n",
        s["init_ratio_max"], s["peak_rss_kb_max"], s["zip_bytes_max"], s["zip_arch"]
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    fn cold(init_ms: u64) -> Vec<ColdSample> {
        vec![ColdSample {
            init: Duration::from_millis(init_ms),
            first_invoke: Duration::from_millis(1),
            init_cpu: Duration::from_millis(init_ms),
            first_invoke_cpu: Duration::from_millis(1),
            peak_rss_kb: 4096,
        }]
    }

    /// Every function has its row, and the worst ratio is over all of them
    /// (issue 9), whichever comes last.
    #[test]
    fn every_function_is_reported() {
        let mut results = Results::default();
        results.cold.insert(BASELINE.into(), cold(2));
        for name in measured() {
            results.cold.insert(name.into(), cold(2));
        }
        let last = measured().last().expect("functions");
        results.cold.insert(last.into(), cold(5));
        let summary = summary(&results, &Value::Null);
        assert_eq!(summary["init_ratio_max"], json!(2.5));
        let table = table(&summary);
        for name in measured() {
            assert!(summary["init_ratio"][name].is_number(), "{name}");
            assert!(table.contains(&format!("\n| {name} | ")), "{name}");
        }
    }

    /// The TLS round's columns: each phase's median (and p90 for the wall
    /// times), from that round's samples alone.
    #[test]
    fn the_tls_round_reports_each_phase() {
        let sample = |ms: u64| ColdSample {
            init: Duration::from_millis(ms),
            first_invoke: Duration::from_millis(ms + 1),
            init_cpu: Duration::from_millis(ms + 2),
            first_invoke_cpu: Duration::from_millis(ms + 3),
            peak_rss_kb: 4096,
        };
        let mut results = Results::default();
        results.cold.insert("logout".into(), cold(50));
        results.cold_tls.insert(
            "logout".into(),
            (1..=10).map(|ms| sample(ms * 10)).collect(),
        );
        let summary = summary(&results, &Value::Null);
        assert_eq!(summary["init_tls_ms"]["logout"]["median"], json!(50.0));
        assert_eq!(summary["init_tls_ms"]["logout"]["p90"], json!(90.0));
        assert_eq!(
            summary["first_invoke_tls_ms"]["logout"]["median"],
            json!(51.0)
        );
        assert_eq!(summary["first_invoke_tls_ms"]["logout"]["p90"], json!(91.0));
        assert_eq!(summary["cold_cpu_tls_ms"]["logout"]["init"], json!(52.0));
        assert_eq!(
            summary["cold_cpu_tls_ms"]["logout"]["first_invoke"],
            json!(53.0)
        );
        // The median sample's 50 + 51 ms, and its 53 ms of CPU taking
        // 1769/128 times as long: 12.82 × 53 ms more.
        assert_eq!(
            summary["cold_start_128mb_model_ms"]["logout"],
            json!(780.477)
        );
    }

    /// The 128 MB round's cold start is measured: each sample's init plus its
    /// first invocation as timed, nothing scaled; the model stays beside it.
    #[test]
    fn the_128_mb_round_is_reported_as_measured() {
        let sample = |init: u64, first: u64| ColdSample {
            init: Duration::from_millis(init),
            first_invoke: Duration::from_millis(first),
            init_cpu: Duration::from_millis(1),
            first_invoke_cpu: Duration::from_millis(1),
            peak_rss_kb: 4096,
        };
        let mut results = Results::default();
        results.cold_tls.insert("logout".into(), vec![sample(5, 2)]);
        results.cold_128mb.insert(
            "logout".into(),
            vec![sample(5, 20), sample(6, 40), sample(4, 90)],
        );
        let summary = summary(&results, &Value::Null);
        assert_eq!(
            summary["cold_start_128mb_ms"]["logout"]["median"],
            json!(46.0)
        );
        assert_eq!(summary["cold_start_128mb_ms"]["logout"]["p90"], json!(94.0));
        assert_eq!(
            summary["first_invoke_128mb_ms"]["logout"]["median"],
            json!(40.0)
        );
        // 5 + 2 ms, and 1 ms of CPU taking 1769/128 times as long.
        assert_eq!(summary["cold_start_128mb_model_ms"]["logout"], json!(19.82));
        assert!(table(&summary).contains(" | 46.0 / 94.0 / 19.8 | "));
    }

    /// Warm CPU is per request: the whole warm phase's CPU over its invocations.
    #[test]
    fn warm_cpu_is_per_request() {
        let mut results = Results::default();
        results.warm.insert(
            "logout".into(),
            Warm {
                durations: vec![Duration::from_millis(2); 400],
                cpu: Duration::from_millis(300),
                peak_rss_kb: 4096,
            },
        );
        let summary = summary(&results, &Value::Null);
        assert_eq!(summary["warm_cpu_ms"]["logout"], json!(0.75));
        assert!(table(&summary).contains(" | 2.00 / 2.00 | 0.75 | 4.0 | "));
    }
}
