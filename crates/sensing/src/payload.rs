//! Telemetry payloads in the ThingsBoard device API convention, so existing devices connect
//! unchanged: `{"key": value, …}`, `{"ts": ms, "values": {…}}`, or an array of either.
//! A message is validated whole against the device's profile: one bad value rejects the whole
//! message, so nothing is half-stored.

use crate::profiles::Profile;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub key: String,
    pub ts_ms: i64,
    pub value: f64,
}

/// Parses and validates one message. `now_ms` stamps readings without `ts`; timestamps more
/// than `max_future_ms` ahead of `now_ms` are refused.
pub fn readings(
    payload: &[u8],
    profile: &Profile,
    now_ms: i64,
    max_future_ms: i64,
) -> Result<Vec<Reading>, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not valid JSON: {e}"))?;
    readings_from_value(value, profile, now_ms, max_future_ms)
}

/// [`readings`] for a message already parsed as JSON.
pub fn readings_from_value(
    value: Value,
    profile: &Profile,
    now_ms: i64,
    max_future_ms: i64,
) -> Result<Vec<Reading>, String> {
    let mut out = Vec::new();
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err("payload is an empty array".into());
            }
            for (index, item) in items.iter().enumerate() {
                sample(item, profile, now_ms, max_future_ms, &mut out)
                    .map_err(|e| format!("item {index}: {e}"))?;
            }
        }
        other => sample(&other, profile, now_ms, max_future_ms, &mut out)?,
    }
    Ok(out)
}

fn sample(
    item: &Value,
    profile: &Profile,
    now_ms: i64,
    max_future_ms: i64,
    out: &mut Vec<Reading>,
) -> Result<(), String> {
    let object = item
        .as_object()
        .ok_or("expected a JSON object of key/value pairs")?;
    let (ts_ms, values) = match (object.get("ts"), object.get("values")) {
        (Some(ts), Some(values)) if object.len() == 2 => {
            let ts = ts
                .as_i64()
                .ok_or("ts must be an integer of milliseconds since the epoch")?;
            let values = values.as_object().ok_or("values must be an object")?;
            (ts, values)
        }
        (Some(_), _) | (_, Some(_)) if object.contains_key("values") => {
            return Err("use {\"ts\": ms, \"values\": {...}} with nothing else beside".into());
        }
        _ => (now_ms, object),
    };
    if ts_ms > now_ms + max_future_ms {
        return Err(format!(
            "ts {ts_ms} is {} s in the future (allowed: {} s)",
            (ts_ms - now_ms) / 1000,
            max_future_ms / 1000
        ));
    }
    if ts_ms < 0 {
        return Err("ts must not be negative".into());
    }
    if values.is_empty() {
        return Err("no values".into());
    }
    for (key, raw) in values {
        let spec = profile.key(key).ok_or_else(|| {
            format!(
                "key {key:?} is not in profile {} (expected: {})",
                profile.code,
                profile.key_names().join(", ")
            )
        })?;
        let value = match raw {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| format!("{key}: not a finite number"))?,
            Value::Bool(b) if spec.unit == "bool" => f64::from(u8::from(*b)),
            other => return Err(format!("{key}: expected a number, got {other}")),
        };
        if !value.is_finite() {
            return Err(format!("{key}: not a finite number"));
        }
        if value < spec.min || value > spec.max {
            return Err(format!(
                "{key} = {value} {} is outside the physical range {}..{} of {}",
                spec.unit, spec.min, spec.max, profile.code
            ));
        }
        out.push(Reading {
            key: key.clone(),
            ts_ms,
            value,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::builtin;

    const NOW: i64 = 1_795_000_000_000;
    const SKEW: i64 = 300_000;

    #[test]
    fn accepted_payloads() {
        let gas = builtin()
            .into_iter()
            .find(|p| p.code == "manhole-gas")
            .expect("profile");
        let parking = builtin()
            .into_iter()
            .find(|p| p.code == "parking-space")
            .expect("profile");
        type Case<'a> = (&'a Profile, &'a str, Vec<(&'a str, i64, f64)>);
        let cases: Vec<Case> = vec![
            (&gas, r#"{"CH4": 12.5}"#, vec![("CH4", NOW, 12.5)]),
            (
                &gas,
                r#"{"ts": 1794999999000, "values": {"CO": 3, "H2S": 0}}"#,
                vec![
                    ("CO", 1_794_999_999_000, 3.0),
                    ("H2S", 1_794_999_999_000, 0.0),
                ],
            ),
            (
                &gas,
                r#"[{"CH4": 1}, {"ts": 1794999990000, "values": {"CH4": 2}}]"#,
                vec![("CH4", NOW, 1.0), ("CH4", 1_794_999_990_000, 2.0)],
            ),
            (
                &parking,
                r#"{"occupied": true}"#,
                vec![("occupied", NOW, 1.0)],
            ),
            (&parking, r#"{"occupied": 0}"#, vec![("occupied", NOW, 0.0)]),
        ];
        for (profile, payload, expected) in cases {
            let got = readings(payload.as_bytes(), profile, NOW, SKEW).expect(payload);
            let got: Vec<(&str, i64, f64)> = got
                .iter()
                .map(|r| (r.key.as_str(), r.ts_ms, r.value))
                .collect();
            assert_eq!(got, expected, "{payload}");
        }
    }

    #[test]
    fn rejected_payloads_say_why() {
        let gas = builtin()
            .into_iter()
            .find(|p| p.code == "manhole-gas")
            .expect("profile");
        let cases = [
            ("{\"CH4\": ", "not valid JSON"),
            ("[]", "empty array"),
            ("42", "expected a JSON object"),
            (r#"{"CH4": "high"}"#, "expected a number"),
            (r#"{"CH4": true}"#, "expected a number"),
            (r#"{"CH4": 150}"#, "outside the physical range"),
            (r#"{"CH4": -1}"#, "outside the physical range"),
            (r#"{"temperature": 20}"#, "not in profile manhole-gas"),
            (
                r#"{"ts": 1795000900000, "values": {"CH4": 1}}"#,
                "in the future",
            ),
            (
                r#"{"ts": "yesterday", "values": {"CH4": 1}}"#,
                "ts must be an integer",
            ),
            (
                r#"{"ts": 1, "values": {"CH4": 1}, "x": 2}"#,
                "nothing else beside",
            ),
            (r#"{}"#, "no values"),
            (r#"[{"CH4": 1}, {"CH4": 900}]"#, "item 1: CH4 = 900"),
        ];
        for (payload, reason) in cases {
            let error = readings(payload.as_bytes(), &gas, NOW, SKEW).expect_err(payload);
            assert!(error.contains(reason), "{payload}: {error}");
        }
    }
}
