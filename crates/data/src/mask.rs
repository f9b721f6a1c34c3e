//! Masking (脱敏): what a consumer sees of a field, by the rule its grant names. `keep`; `mask`
//! by the field's kind (ID numbers `370202********1234`, phones `138****5678`, names `张*`,
//! addresses to the street, coordinates to a 0.01° grid); `generalise` (ages to ten-year
//! bands, dates to months, amounts to their order of magnitude, addresses to the district);
//! `hash` with a salt per consumer (equal values hash equal inside one consumer, so its joins
//! still work, and differ between consumers); `drop`.

use serde_json::Value;

pub const RULES: [&str; 5] = ["keep", "mask", "generalise", "hash", "drop"];

/// The kinds of value masking knows the form of.
pub const KINDS: [&str; 7] = [
    "id_number",
    "phone",
    "name",
    "address",
    "coordinate",
    "age",
    "date",
];

/// Whether an 18-character resident ID number (GB 11643-1999) has its check character right.
pub fn id_number_valid(text: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let bytes = text.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = bytes[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    bytes[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
}

/// The check character of an ID number's first 17 digits (for making valid synthetic ones).
pub fn id_check_char(first17: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b.wrapping_sub(b'0')) * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

fn keep_ends(text: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= head + tail {
        return match chars.first() {
            Some(first) => format!("{first}{}", stars(chars.len().saturating_sub(1))),
            None => String::new(),
        };
    }
    let mut out: String = chars[..head].iter().collect();
    out.push_str(&stars(chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// An address cut after the first of `marks` it holds (the mark kept), if any.
fn cut_after(text: &str, marks: &[&str]) -> Option<String> {
    marks
        .iter()
        .filter_map(|m| text.find(m).map(|at| at + m.len()))
        .min()
        .map(|end| text[..end].to_owned())
}

fn mask_text(kind: Option<&str>, text: &str) -> String {
    match kind {
        Some("id_number") => keep_ends(text, 6, 4),
        Some("phone") => keep_ends(text, 3, 4),
        Some("name") => keep_ends(text, 1, 0),
        Some("address") => cut_after(text, &["街道", "镇", "乡"])
            .or_else(|| cut_after(text, &["路", "街", "道"]))
            .or_else(|| cut_after(text, &["区", "县", "市"]))
            .unwrap_or_else(|| keep_ends(text, 1, 0)),
        Some("date") => text
            .get(..7)
            .map_or_else(|| stars(text.len()), str::to_owned),
        _ => keep_ends(text, 1, 1),
    }
}

fn grid(value: f64) -> Value {
    serde_json::Number::from_f64((value * 100.0).round() / 100.0).map_or(Value::Null, Value::Number)
}

fn band(value: f64, width: f64) -> String {
    let low = (value / width).floor() * width;
    format!("{}-{}", low as i64, (low + width) as i64 - 1)
}

fn magnitude(value: f64) -> String {
    let abs = value.abs();
    if abs < 10.0 {
        return band(value, 10.0);
    }
    let width = 10f64.powi(abs.log10().floor() as i32);
    band(value, width)
}

/// The value a consumer sees under `rule`; `None` when the field is dropped.
pub fn apply(rule: &str, kind: Option<&str>, value: &Value, salt: &[u8]) -> Option<Value> {
    if value.is_null() {
        return (rule != "drop").then_some(Value::Null);
    }
    match rule {
        "keep" => Some(value.clone()),
        "drop" => None,
        "hash" => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let digest = yunnao_gm::sm3_parts(&[salt, text.as_bytes()]);
            Some(Value::String(hex::encode(&digest[..12])))
        }
        "mask" => Some(match (kind, value) {
            (Some("coordinate"), Value::Number(n)) => grid(n.as_f64().unwrap_or(0.0)),
            (Some("age"), Value::Number(n)) => Value::String(band(n.as_f64().unwrap_or(0.0), 10.0)),
            (_, Value::String(s)) => Value::String(mask_text(kind, s)),
            (_, other) => Value::String(stars(other.to_string().chars().count().min(8))),
        }),
        "generalise" => Some(match (kind, value) {
            (Some("coordinate"), Value::Number(n)) => {
                let v = n.as_f64().unwrap_or(0.0);
                serde_json::Number::from_f64((v * 10.0).round() / 10.0)
                    .map_or(Value::Null, Value::Number)
            }
            (Some("age"), Value::Number(n)) => Value::String(band(n.as_f64().unwrap_or(0.0), 10.0)),
            (_, Value::Number(n)) => Value::String(magnitude(n.as_f64().unwrap_or(0.0))),
            (Some("address"), Value::String(s)) => Value::String(
                cut_after(s, &["区", "县"])
                    .or_else(|| cut_after(s, &["市"]))
                    .unwrap_or_else(|| mask_text(Some("address"), s)),
            ),
            (Some("name"), Value::String(s)) => Value::String(mask_text(Some("name"), s)),
            (Some("id_number"), Value::String(s)) => {
                // The issuing area (first six digits) and nothing of the person.
                Value::String(format!("{}{}", s.get(..6).unwrap_or(""), stars(12)))
            }
            (_, Value::String(s)) if s.len() >= 7 && s.as_bytes()[4] == b'-' => {
                // A date or time: its month.
                Value::String(s[..7].to_owned())
            }
            (_, Value::String(s)) => Value::String(mask_text(kind, s)),
            (_, other) => other.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (rule, kind, value, what the consumer sees)
    #[test]
    fn each_rule_by_example() {
        let cases: &[(&str, Option<&str>, Value, Option<Value>)] = &[
            (
                "keep",
                Some("phone"),
                json!("13812345678"),
                Some(json!("13812345678")),
            ),
            (
                "mask",
                Some("id_number"),
                json!("370202199001011234"),
                Some(json!("370202********1234")),
            ),
            (
                "mask",
                Some("phone"),
                json!("13812345678"),
                Some(json!("138****5678")),
            ),
            ("mask", Some("name"), json!("张三"), Some(json!("张*"))),
            (
                "mask",
                Some("name"),
                json!("欧阳娜娜"),
                Some(json!("欧***")),
            ),
            (
                "mask",
                Some("address"),
                json!("山东省青岛市市南区八大关街道山海关路5号"),
                Some(json!("山东省青岛市市南区八大关街道")),
            ),
            (
                "mask",
                Some("address"),
                json!("青岛市市南区香港中路61号"),
                Some(json!("青岛市市南区香港中路")),
            ),
            (
                "mask",
                Some("coordinate"),
                json!(120.38291),
                Some(json!(120.38)),
            ),
            ("mask", Some("age"), json!(67), Some(json!("60-69"))),
            ("generalise", Some("age"), json!(34), Some(json!("30-39"))),
            (
                "generalise",
                Some("date"),
                json!("1958-07-21"),
                Some(json!("1958-07")),
            ),
            ("generalise", None, json!(8234.5), Some(json!("8000-8999"))),
            (
                "generalise",
                Some("address"),
                json!("青岛市崂山区松岭路238号"),
                Some(json!("青岛市崂山区")),
            ),
            ("drop", Some("phone"), json!("13812345678"), None),
            ("mask", Some("phone"), Value::Null, Some(Value::Null)),
        ];
        for (rule, kind, value, want) in cases {
            assert_eq!(
                &apply(rule, *kind, value, b"salt"),
                want,
                "{rule} {kind:?} {value}"
            );
        }
    }

    #[test]
    fn hashes_join_inside_one_consumer_only() {
        let a = apply(
            "hash",
            Some("id_number"),
            &json!("370202199001011234"),
            b"consumer-a",
        );
        let a2 = apply(
            "hash",
            Some("id_number"),
            &json!("370202199001011234"),
            b"consumer-a",
        );
        let b = apply(
            "hash",
            Some("id_number"),
            &json!("370202199001011234"),
            b"consumer-b",
        );
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, Some(json!("370202199001011234")));
    }

    #[test]
    fn id_numbers_have_their_check_character() {
        let first = "11010519491231002";
        let id = format!("{first}{}", id_check_char(first));
        assert_eq!(id, "11010519491231002X");
        assert!(id_number_valid(&id));
        assert!(!id_number_valid("110105194912310021"));
        assert!(!id_number_valid("12345"));
    }
}
