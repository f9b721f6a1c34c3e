//! NGSI-LD request/response cases as data: each file in `tests/cases/` is a sequence of steps
//! (request, expected status, headers and body) run in order on a fresh broker, on every
//! backend. `UPDATE_EXPECT=1 cargo test -p yunnao-context --test cases` writes what the broker
//! answers into the files instead (review the diff before committing it).
//!
//! A step: `{"request": {"method", "path", "headers"?, "body"?, "as"?}, "expect": {"status",
//! "headers"?, "body"?}}`. Generated ids (UUIDs) are compared as `{uuid}`, times the broker
//! stamped as `{now}`; a request refers to the N-th id generated so far as `{uuid:N}` and to a
//! time N seconds from now as `{now+Ns}` (a case must not expire with the calendar). A step
//! speaks as `"as"` (`"water operator"`, `"anonymous"`), by default as a transport operator.
//! A step whose expectation has no `body` does not compare the body.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use yunnao_store::testing::TestBackend;

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Who a step speaks as when it does not say (`"as"`): an operator of the transport bureau.
const DEFAULT_CALLER: &str = "transport operator";

fn uuid_pattern() -> regex::Regex {
    regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        .expect("regex")
}

/// A request with `{uuid:N}` replaced by the N-th id (from 0) the broker generated so far in
/// this case, in the order its answers first showed them, and `{now+Ns}` by the time N seconds
/// from now.
fn substituted(value: Value, generated: &[String]) -> Value {
    match value {
        Value::String(mut text) => {
            for (n, id) in generated.iter().enumerate() {
                text = text.replace(&format!("{{uuid:{n}}}"), id);
            }
            let later = regex::Regex::new(r"\{now\+(\d+)s\}").expect("regex");
            let text = later.replace_all(&text, |found: &regex::Captures| {
                let seconds: i64 = found[1].parse().unwrap_or_default();
                yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms() + seconds * 1000)
            });
            Value::String(text.into_owned())
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| substituted(v, generated))
                .collect(),
        ),
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k, substituted(v, generated)))
                .collect(),
        ),
        other => other,
    }
}

/// Replaces generated ids (UUIDs, in any text) with `{uuid}` and times the broker stamped
/// (`createdAt`, `modifiedAt`, instance ids: within a day of the run) with `{now}`.
fn normalised(value: Value) -> Value {
    let uuid = uuid_pattern();
    match value {
        Value::String(text)
            if yunnao_core::time::parse_rfc3339_ms(&text)
                .is_some_and(|ms| (ms - yunnao_core::time::now_ms()).abs() < 86_400_000) =>
        {
            Value::String("{now}".into())
        }
        Value::String(text) => {
            let text = uuid.replace_all(&text, "{uuid}");
            // Instance ids the broker made from the time it stored a value.
            let instance = regex::Regex::new(r"urn:ngsi-ld:Instance:(\d{13})").expect("regex");
            let text = instance.replace_all(&text, |found: &regex::Captures| {
                let ms: i64 = found[1].parse().unwrap_or_default();
                if (ms - yunnao_core::time::now_ms()).abs() < 86_400_000 {
                    "urn:ngsi-ld:Instance:{now}".to_owned()
                } else {
                    found[0].to_owned()
                }
            });
            Value::String(text.into_owned())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalised).collect()),
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k, normalised(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Equal JSON, numbers within a part in 10¹²: a sum or mean over floats differs in its last
/// digit with the order a backend adds the rows in (118.8 or 118.80000000000001).
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            _ => a == b,
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        _ => expected == actual,
    }
}

fn headers_of(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn run_cases(backend: TestBackend) {
    let bless = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let files = case_files();
    assert!(!files.is_empty(), "no case files");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("case file");
        let mut case: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let broker = support::broker_with(backend, true).await;
        let mut generated = Vec::new();
        let steps = case["steps"].as_array_mut().expect("steps");
        for (n, step) in steps.iter_mut().enumerate() {
            let request = substituted(step["request"].clone(), &generated);
            let who = request["as"].as_str().unwrap_or(DEFAULT_CALLER);
            let caller = support::caller(who);
            assert!(
                caller.is_some() || who == "anonymous",
                "{}: step {}: \"as\" is \"<department> <role>\" or \"anonymous\"",
                file.display(),
                n + 1
            );
            let answer = broker
                .call_as(
                    caller,
                    request["method"].as_str().unwrap_or("GET"),
                    request["path"].as_str().expect("path"),
                    &headers_of(&request["headers"]),
                    request.get("body"),
                )
                .await;
            let headers: serde_json::Map<String, Value> = answer
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let answered = json!({
                "status": answer.status,
                "headers": headers,
                "body": answer.body,
            });
            for id in uuid_pattern().find_iter(&answered.to_string()) {
                if !generated.iter().any(|seen| seen == id.as_str()) {
                    generated.push(id.as_str().to_owned());
                }
            }
            let actual = normalised(answered);
            if bless {
                step["expect"] = actual;
                continue;
            }
            let expect = &step["expect"];
            let mut differs = expect["status"] != actual["status"];
            if let Some(expected) = expect["headers"].as_object() {
                for (name, value) in expected {
                    differs |= actual["headers"].get(name) != Some(value);
                }
            }
            if let Some(body) = expect.get("body") {
                differs |= !same(body, &actual["body"]);
            }
            if differs {
                failures.push(format!(
                    "{} step {} ({} {}):\n  expected {}\n  got      {}",
                    file.file_name().unwrap_or_default().to_string_lossy(),
                    n + 1,
                    request["method"].as_str().unwrap_or("GET"),
                    request["path"].as_str().unwrap_or_default(),
                    expect,
                    actual
                ));
            }
        }
        if bless && backend == TestBackend::Sqlite {
            let text = serde_json::to_string_pretty(&case).expect("json") + "\n";
            std::fs::write(&file, text).expect("write case");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

yunnao_store::backend_tests!(run_cases);
