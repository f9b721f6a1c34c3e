//! Reading a gateway's bulk upload with bounded memory.
//!
//! A body is read item by item straight from its bytes, never as one `serde_json::Value`: an
//! item keeps only its scalar members (and the scalars of its `values` object); anything nested
//! deeper is skipped without being stored and makes the item invalid. A request holds at most
//! [`MAX_ITEMS`] items and [`MAX_VALUES`] members in all, so what a body expands to is bounded
//! whatever its shape (`[1,1,1,…]`, one item with a million members, deep arrays).

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;

/// Items (array elements or NDJSON lines) in one request.
pub const MAX_ITEMS: usize = 50_000;
/// Members (device id, time, values) of all items of one request together.
pub const MAX_VALUES: usize = 500_000;
/// Members of one item (or of its `values` object).
pub const MAX_MEMBERS_PER_ITEM: usize = 256;
/// Refused items the report names one by one; the rest are only counted.
pub const REPORTED_REJECTIONS: usize = 100;
/// Longest reason text kept for one refused item.
const MAX_REASON_CHARS: usize = 300;

/// One item as read: its members, or why it cannot be an item.
pub type Item = Result<Map<String, Value>, String>;

/// The items of a body with their positions, or why the whole body was refused.
pub type Items = Result<Vec<(usize, Item)>, BodyError>;

/// Why a whole body was refused.
#[derive(Debug, PartialEq)]
pub enum BodyError {
    /// Not JSON, or not an array (400).
    Malformed(String),
    /// More items or members than one request may carry (413).
    TooLarge(String),
}

/// Reads a JSON array of items.
pub fn from_array(body: &[u8]) -> Items {
    let budget = Budget::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let items = de::Deserializer::deserialize_any(&mut deserializer, ItemsVisitor(&budget))
        .and_then(|items| deserializer.end().map(|()| items));
    items.map_err(|e| budget.refusal(e))
}

/// Reads NDJSON: one item a line, blank lines skipped; a line that is not JSON is a refused item.
pub fn from_lines(body: &[u8]) -> Items {
    let budget = Budget::default();
    let mut items = Vec::new();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if items.len() >= MAX_ITEMS {
            return Err(BodyError::TooLarge(too_many_items()));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        let item = ItemSeed(&budget)
            .deserialize(&mut deserializer)
            .and_then(|item| deserializer.end().map(|()| item));
        match item {
            Ok(item) => items.push((index, item)),
            Err(e) => match budget.exceeded.take() {
                Some(message) => return Err(BodyError::TooLarge(message)),
                None => items.push((index, Err(format!("line is not valid JSON: {e}")))),
            },
        }
    }
    Ok(items)
}

fn too_many_items() -> String {
    format!("a bulk request carries at most {MAX_ITEMS} items; send the rest in another request")
}

/// Cuts an item's reason to a bounded length (it may quote the item).
pub fn bounded_reason(mut reason: String) -> String {
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

#[derive(Default)]
struct Budget {
    used: Cell<usize>,
    exceeded: Cell<Option<String>>,
}

impl Budget {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        let used = self.used.get() + 1;
        if used > MAX_VALUES {
            let message = format!(
                "a bulk request carries at most {MAX_VALUES} values in all; send the rest in another request"
            );
            self.exceeded.set(Some(message.clone()));
            return Err(E::custom(message));
        }
        self.used.set(used);
        Ok(())
    }

    fn refuse_items<E: de::Error>(&self) -> E {
        let message = too_many_items();
        self.exceeded.set(Some(message.clone()));
        E::custom(message)
    }

    fn refusal(&self, error: serde_json::Error) -> BodyError {
        match self.exceeded.take() {
            Some(message) => BodyError::TooLarge(message),
            None => BodyError::Malformed(format!(
                "the body is not a JSON array of device items: {error}"
            )),
        }
    }
}

struct ItemsVisitor<'b>(&'b Budget);

impl<'de> Visitor<'de> for ItemsVisitor<'_> {
    type Value = Vec<(usize, Item)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of device items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed(self.0))? {
            if items.len() >= MAX_ITEMS {
                return Err(self.0.refuse_items());
            }
            items.push((items.len(), item));
        }
        Ok(items)
    }
}

struct ItemSeed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Item, D::Error> {
        deserializer.deserialize_any(ObjectVisitor {
            budget: self.0,
            nested: true,
        })
    }
}

/// An object of scalars; with `nested`, one member (`values`) may itself be such an object.
struct ObjectVisitor<'b> {
    budget: &'b Budget,
    nested: bool,
}

const NOT_AN_OBJECT: &str = "item is not an object";

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut object = Map::new();
        let mut refused: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if refused.is_some() || object.len() >= MAX_MEMBERS_PER_ITEM {
                refused.get_or_insert_with(|| {
                    format!("more than {MAX_MEMBERS_PER_ITEM} members in one object")
                });
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.budget.take()?;
            let member = map.next_value_seed(MemberSeed {
                budget: self.budget,
                object_allowed: self.nested && key == "values",
            })?;
            match member {
                Ok(value) => {
                    object.insert(key, value);
                }
                Err(reason) => refused = Some(format!("{key}: {reason}")),
            }
        }
        match refused {
            Some(reason) => Ok(Err(reason)),
            None => Ok(Ok(object)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(NOT_AN_OBJECT.into()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item, E> {
        Ok(Err(NOT_AN_OBJECT.into()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Item, E> {
        Ok(Err(NOT_AN_OBJECT.into()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Item, E> {
        Ok(Err(NOT_AN_OBJECT.into()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Item, E> {
        Ok(Err(NOT_AN_OBJECT.into()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Item, E> {
        Ok(Err(NOT_AN_OBJECT.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
        Ok(Err(NOT_AN_OBJECT.into()))
    }
}

/// One member's value: a scalar, or (where allowed) an object of scalars.
struct MemberSeed<'b> {
    budget: &'b Budget,
    object_allowed: bool,
}

impl<'de> DeserializeSeed<'de> for MemberSeed<'_> {
    type Value = Result<Value, String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

const NOT_A_SCALAR: &str = "expected a number";

impl<'de> Visitor<'de> for MemberSeed<'_> {
    type Value = Result<Value, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, string, boolean or null")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Ok(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ok(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| "not a finite number".to_owned()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(NOT_A_SCALAR.into()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        if !self.object_allowed {
            let mut map = map;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Err(NOT_A_SCALAR.into()));
        }
        let inner = ObjectVisitor {
            budget: self.budget,
            nested: false,
        }
        .visit_map(map)?;
        Ok(inner.map(Value::Object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_scalars_and_values() {
        let body = br#"[{"device":"a","ts":5,"values":{"CH4":1.5,"on":true}},{"device":"b","CO":3},7,[1,[2]],{"device":"c","x":{"y":1}},{"device":"d","values":{"x":[1]}}]"#;
        let items = from_array(body).expect("read");
        assert_eq!(items.len(), 6);
        let first = items[0].1.as_ref().expect("first item");
        assert_eq!(
            Value::Object(first.clone()),
            serde_json::json!({"device":"a","ts":5,"values":{"CH4":1.5,"on":true}})
        );
        assert_eq!(
            items[1].1.as_ref().ok().and_then(|o| o.get("CO")),
            Some(&Value::from(3))
        );
        assert_eq!(items[2].1, Err(NOT_AN_OBJECT.to_owned()));
        assert_eq!(items[3].1, Err(NOT_AN_OBJECT.to_owned()));
        assert_eq!(items[4].1, Err("x: expected a number".to_owned()));
        assert_eq!(items[5].1, Err("values: x: expected a number".to_owned()));
    }

    #[test]
    fn bodies_past_the_bounds_are_refused_whole() {
        let at_limit = format!("[{}1]", "1,".repeat(MAX_ITEMS - 1));
        assert_eq!(
            from_array(at_limit.as_bytes()).map(|i| i.len()),
            Ok(MAX_ITEMS)
        );
        let past = format!("[{}1]", "1,".repeat(MAX_ITEMS));
        assert!(matches!(
            from_array(past.as_bytes()),
            Err(BodyError::TooLarge(_))
        ));
        let lines = "{}\n".repeat(MAX_ITEMS + 1);
        assert!(matches!(
            from_lines(lines.as_bytes()),
            Err(BodyError::TooLarge(_))
        ));
        // Many members: each item is within its own bound, the request is not.
        let item = format!(
            "{{{}\"device\":\"d\"}}",
            (0..200).map(|i| format!("\"k{i}\":1,")).collect::<String>()
        );
        let body = format!("[{}]", vec![item; MAX_VALUES / 200 + 1].join(","));
        assert!(matches!(
            from_array(body.as_bytes()),
            Err(BodyError::TooLarge(_))
        ));
        let wide = format!(
            "[{{{}\"device\":\"d\"}}]",
            (0..MAX_MEMBERS_PER_ITEM + 1)
                .map(|i| format!("\"k{i}\":1,"))
                .collect::<String>()
        );
        let items = from_array(wide.as_bytes()).expect("read");
        assert!(items[0].1.as_ref().is_err_and(|r| r.contains("members")));
    }

    #[test]
    fn malformed_bodies_are_malformed() {
        for body in [&b"{}"[..], b"[1,", b"[1] x", b"\"a\""] {
            assert!(
                matches!(from_array(body), Err(BodyError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Deep nesting is skipped without recursion and refuses the item it is in.
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let items = from_array(deep.as_bytes()).expect("read");
        assert_eq!(items[0].1, Err(NOT_AN_OBJECT.to_owned()));
        let deep = format!("[{{\"x\":{}{}}}]", "[".repeat(100_000), "]".repeat(100_000));
        let items = from_array(deep.as_bytes()).expect("read");
        assert_eq!(items[0].1, Err("x: expected a number".to_owned()));
        let items = from_lines(b"{\"device\":\"a\"}\nnot json\n\n").expect("read");
        assert_eq!(items.len(), 2);
        assert!(
            items[1]
                .1
                .as_ref()
                .is_err_and(|r| r.contains("not valid JSON"))
        );
    }

    #[test]
    fn reasons_are_bounded() {
        let long = bounded_reason("x".repeat(10_000));
        assert_eq!(long.chars().count(), MAX_REASON_CHARS + 1);
        assert_eq!(bounded_reason("short".into()), "short");
    }
}
