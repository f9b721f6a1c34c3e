//! The NGSI-LD query language (`q`, CIM 009 §4.9): comparisons on attribute values, sub-attribute
//! paths (`a.b`), members of structured values (`a[b.c]`), existence, ranges (`1..5`), lists
//! (`1,2,3`), patterns (`~=`), `;` (and, binding tighter) and `|` (or) with parentheses, and
//! attributes of linked entities (`rel{attr}`: of the entities the Relationship `rel` names,
//! resolved beforehand into [`Links`]).

use crate::errors;
use crate::jsonld::Context;
use crate::model::Entity;
use serde_json::Value;
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_store::{Arg, JsonSql};

/// Linked entities by id, resolved for `rel{attr}` terms ([`resolve_links`]).
pub type Links = HashMap<String, Entity>;

/// How many linked entities one evaluation may read at most.
const MAX_LINKS: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Term(Term),
    /// `!attribute`: the attribute is not there (clause 4.9, notExistence).
    Absent(Term),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// Expanded attribute name, then sub-attribute names or system members (`observedAt`).
    pub path: Vec<String>,
    /// Members inside the value (`a[b.c]` → ["b", "c"]).
    pub members: Vec<String>,
    pub comparison: Option<(Op, Operand)>,
    /// `rel{…}`: the term tested on the entities the Relationship `path[0]` names (the
    /// comparison is the innermost term's).
    pub linked: Option<Box<Term>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
    Bool(bool),
    /// An unquoted date-time, in ms; compared with string values that parse as date-times.
    Time(i64),
    /// Anything else unquoted (URIs, bare words): compared as text.
    Bare(String),
}

#[derive(Debug, Clone)]
pub enum Operand {
    One(Literal),
    Range(Literal, Literal),
    List(Vec<Literal>),
    Pattern(regex::Regex),
}

impl PartialEq for Operand {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Operand::One(a), Operand::One(b)) => a == b,
            (Operand::Range(a, b), Operand::Range(c, d)) => a == c && b == d,
            (Operand::List(a), Operand::List(b)) => a == b,
            (Operand::Pattern(a), Operand::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

const SYSTEM_MEMBERS: &[&str] = &[
    "observedAt",
    "createdAt",
    "modifiedAt",
    "unitCode",
    "datasetId",
];

/// Deepest nesting of parentheses and linked-entity braces a `q` may hold: the parser
/// recurses once per level, so outside input must not choose the depth.
pub const MAX_DEPTH: usize = 32;
/// Most comparisons one `q` may hold: each becomes a condition in SQL, whose expression depth
/// is bounded (SQLite: 1,000).
pub const MAX_TERMS: usize = 256;
/// Longest `q` accepted, in characters.
pub const MAX_LENGTH: usize = 16 * 1024;

pub fn parse(text: &str, context: &Context) -> Result<Expr, Problem> {
    if text.chars().count() > MAX_LENGTH {
        return Err(errors::bad_request(format!(
            "q is longer than {MAX_LENGTH} characters"
        )));
    }
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
        context,
        depth: 0,
        terms: 0,
    };
    let expr = parser.or()?;
    if parser.at != parser.chars.len() {
        return Err(parser.error("unexpected text"));
    }
    Ok(expr)
}

/// `q` of a query with its `expandValues` parameter (clause 5.7.2.4: attribute names, comma
/// separated): the strings those attributes are compared with in `q` are terms, expanded with
/// the context as stored vocab values are (clause 4.9, EXAMPLE 12). Other strings are compared
/// as written.
pub fn parse_expanding(
    text: &str,
    expand_values: Option<&str>,
    context: &Context,
) -> Result<Expr, Problem> {
    let mut expr = parse(text, context)?;
    if let Some(names) = expand_values {
        let names: Vec<String> = names
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| context.expand(name))
            .collect();
        expr.expand_values(&names, context);
    }
    Ok(expr)
}

impl Expr {
    fn expand_values(&mut self, names: &[String], context: &Context) {
        match self {
            Expr::Or(parts) | Expr::And(parts) => {
                for part in parts {
                    part.expand_values(names, context);
                }
            }
            Expr::Term(term) | Expr::Absent(term) => {
                if term.linked.is_some() || !term.path.first().is_some_and(|n| names.contains(n)) {
                    return;
                }
                let expand = |literal: &mut Literal| {
                    if let Literal::Text(text) | Literal::Bare(text) = literal {
                        *text = context.expand(text);
                    }
                };
                match term.comparison.as_mut().map(|(_, operand)| operand) {
                    Some(Operand::One(literal)) => expand(literal),
                    Some(Operand::Range(low, high)) => {
                        expand(low);
                        expand(high);
                    }
                    Some(Operand::List(literals)) => literals.iter_mut().for_each(expand),
                    Some(Operand::Pattern(_)) | None => {}
                }
            }
        }
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    context: &'a Context,
    /// Open parentheses and braces around the current position.
    depth: usize,
    /// Comparisons and existence tests read so far.
    terms: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> Problem {
        // Quote a bounded excerpt: the text may be long.
        let text: String = self.chars.iter().take(200).collect();
        let more = if self.chars.len() > 200 { "…" } else { "" };
        errors::bad_request(format!(
            "q: {what} at position {} of {text:?}{more}",
            self.at
        ))
    }

    fn enter(&mut self) -> Result<(), Problem> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!(
                "more than {MAX_DEPTH} nested parentheses or braces"
            )));
        }
        Ok(())
    }

    fn count_term(&mut self) -> Result<(), Problem> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error(&format!("more than {MAX_TERMS} conditions")));
        }
        Ok(())
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn or(&mut self) -> Result<Expr, Problem> {
        let mut items = vec![self.and()?];
        while self.peek() == Some('|') {
            self.at += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, Problem> {
        let mut items = vec![self.primary()?];
        while self.peek() == Some(';') {
            self.at += 1;
            items.push(self.primary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn primary(&mut self) -> Result<Expr, Problem> {
        if self.peek() == Some('(') {
            self.at += 1;
            self.enter()?;
            let inner = self.or()?;
            if self.peek() != Some(')') {
                return Err(self.error("missing ')'"));
            }
            self.at += 1;
            self.depth -= 1;
            return Ok(inner);
        }
        if self.peek() == Some('!') && self.chars.get(self.at + 1) != Some(&'=') {
            self.at += 1;
            let term = self.term()?;
            if term.comparison.is_some() {
                return Err(self.error("'!' negates an attribute's existence only"));
            }
            return Ok(Expr::Absent(term));
        }
        self.term().map(Expr::Term)
    }

    fn term(&mut self) -> Result<Term, Problem> {
        self.count_term()?;
        let mut term = self.term_path()?;
        let Some(op) = self.operator()? else {
            return Ok(term);
        };
        let operand = self.operand(op)?;
        term.compare_innermost((op, operand));
        Ok(term)
    }

    /// An attribute path: `a.b`, `a[b.c]`, or `rel{path}` (a linked entity's, nested).
    fn term_path(&mut self) -> Result<Term, Problem> {
        let start = self.at;
        while let Some(c) = self.peek() {
            if "=!<>~;|()[{}".contains(c) {
                break;
            }
            self.at += 1;
        }
        let attribute: String = self.chars[start..self.at].iter().collect();
        if attribute.is_empty() {
            return Err(self.error("expected an attribute name"));
        }
        let mut names = attribute.split('.');
        let first = names.next().unwrap_or_default();
        let mut path = vec![self.context.expand(first)];
        for name in names {
            if name.is_empty() {
                return Err(self.error("empty name in attribute path"));
            }
            path.push(if SYSTEM_MEMBERS.contains(&name) {
                name.to_owned()
            } else {
                self.context.expand(name)
            });
        }
        if self.peek() == Some('{') {
            if path.len() != 1 {
                return Err(self.error("'{' follows a Relationship's name"));
            }
            self.at += 1;
            self.enter()?;
            let inner = self.term_path()?;
            if self.peek() != Some('}') {
                return Err(self.error("missing '}'"));
            }
            self.at += 1;
            self.depth -= 1;
            return Ok(Term {
                path,
                members: Vec::new(),
                comparison: None,
                linked: Some(Box::new(inner)),
            });
        }
        let mut members = Vec::new();
        if self.peek() == Some('[') {
            self.at += 1;
            let start = self.at;
            while self.peek().is_some_and(|c| c != ']') {
                self.at += 1;
            }
            if self.peek() != Some(']') {
                return Err(self.error("missing ']'"));
            }
            let inside: String = self.chars[start..self.at].iter().collect();
            self.at += 1;
            members = inside.split('.').map(str::to_owned).collect();
            if members.iter().any(String::is_empty) {
                return Err(self.error("empty member name"));
            }
        }
        Ok(Term {
            path,
            members,
            comparison: None,
            linked: None,
        })
    }

    fn operator(&mut self) -> Result<Option<Op>, Problem> {
        let rest: String = self.chars[self.at..].iter().take(3).collect();
        let (op, len) = if rest.starts_with("!~=") {
            (Op::NotMatches, 3)
        } else if rest.starts_with("==") {
            (Op::Eq, 2)
        } else if rest.starts_with("!=") {
            (Op::Ne, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with("~=") {
            (Op::Matches, 2)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.is_empty() || rest.starts_with([';', '|', ')']) {
            return Ok(None);
        } else {
            return Err(self.error("expected an operator (==, !=, >, >=, <, <=, ~=, !~=)"));
        };
        self.at += len;
        Ok(Some(op))
    }

    /// The raw operand: up to the next `;`, `|` or `)` outside quotes.
    fn operand(&mut self, op: Op) -> Result<Operand, Problem> {
        let start = self.at;
        let mut quoted = false;
        while let Some(c) = self.peek() {
            if c == '"' {
                quoted = !quoted;
            } else if !quoted && ";|)".contains(c) {
                break;
            }
            self.at += 1;
        }
        if quoted {
            return Err(self.error("unterminated string"));
        }
        let raw: String = self.chars[start..self.at].iter().collect();
        if raw.is_empty() {
            return Err(self.error("expected a value"));
        }
        if matches!(op, Op::Matches | Op::NotMatches) {
            let pattern = raw.trim_matches('"');
            return regex::Regex::new(pattern)
                .map(Operand::Pattern)
                .map_err(|e| self.error(&format!("bad pattern: {e}")));
        }
        let parts = split_outside_quotes(&raw, ',');
        if parts.len() > 1 {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(self.error("a list of values needs == or !="));
            }
            return Ok(Operand::List(
                parts
                    .iter()
                    .map(|p| literal(p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| self.error(&e))?,
            ));
        }
        if let Some((low, high)) = split_range(&raw) {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(self.error("a range needs == or !="));
            }
            return Ok(Operand::Range(
                literal(low).map_err(|e| self.error(&e))?,
                literal(high).map_err(|e| self.error(&e))?,
            ));
        }
        literal(&raw).map(Operand::One).map_err(|e| self.error(&e))
    }
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == separator && !quoted {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn split_range(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('"') {
        return None;
    }
    text.split_once("..")
}

fn literal(text: &str) -> Result<Literal, String> {
    if let Some(inner) = text.strip_prefix('"') {
        return inner
            .strip_suffix('"')
            .map(|s| Literal::Text(s.to_owned()))
            .ok_or_else(|| "unterminated string".to_owned());
    }
    match text {
        "true" => return Ok(Literal::Bool(true)),
        "false" => return Ok(Literal::Bool(false)),
        _ => {}
    }
    if let Ok(number) = text.parse::<f64>()
        && number.is_finite()
    {
        return Ok(Literal::Number(number));
    }
    if text.contains('T')
        && let Some(ms) = yunnao_core::time::parse_rfc3339_ms(text)
    {
        return Ok(Literal::Time(ms));
    }
    if text.is_empty() {
        return Err("empty value".into());
    }
    if text.contains(['<', '>', '=', '!', '~', '"', '\'', '(', '[', ']']) {
        return Err(format!("{text:?} is not a value (quote strings: \"…\")"));
    }
    Ok(Literal::Bare(text.to_owned()))
}

impl Expr {
    pub fn matches(&self, entity: &Entity) -> bool {
        self.matches_in(entity, &Links::new())
    }

    /// Does the expression hold for `entity`, its linked entities read from `links`?
    pub fn matches_in(&self, entity: &Entity, links: &Links) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|e| e.matches_in(entity, links)),
            Expr::And(items) => items.iter().all(|e| e.matches_in(entity, links)),
            Expr::Term(term) => term.matches_in(entity, links),
            Expr::Absent(term) => !term.matches_in(entity, links),
        }
    }
}

/// A context source filter (`csf`, clause 4.9), read as a query on the registrations' own
/// properties.
pub fn parse_csf(csf: &str, context: &Context) -> Result<Expr, Problem> {
    check_csf(csf)?;
    parse(csf, context)
}

/// The form of a context source filter: not empty, parentheses balanced.
pub fn check_csf(csf: &str) -> Result<(), Problem> {
    let mut depth = 0i32;
    let balanced = csf.chars().all(|c| {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        depth >= 0
    }) && depth == 0;
    if !balanced || csf.trim().is_empty() {
        return Err(errors::bad_request(format!(
            "csf {csf:?} is not a context source filter"
        )));
    }
    Ok(())
}

/// `orderBy` (clause 4.23): attribute paths, each ascending, descending, or by distance from
/// `orderFrom`; numbers before strings before other values, entities without the value last.
#[derive(Debug, Clone)]
pub struct Ordering(Vec<(Term, Direction)>, Option<Collation>);

/// How strings compare under `collation` (clause 4.23.3): as the locale sorts them (ICU4X, the
/// CLDR collation tailorings: `und` the root order, `zh` pinyin, …), not by code point.
#[derive(Clone)]
pub struct Collation(std::sync::Arc<icu_collator::CollatorBorrowed<'static>>);

impl std::fmt::Debug for Collation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collation")
    }
}

impl Collation {
    /// The collation a language tag names; BadRequestData when it is not one.
    pub fn new(tag: &str) -> Result<Self, Problem> {
        let refused = || errors::bad_request(format!("collation {tag:?} is not a language tag"));
        let locale = icu_locale_core::Locale::try_from_str(tag).map_err(|_| refused())?;
        let collator = icu_collator::Collator::try_new(
            (&locale).into(),
            icu_collator::options::CollatorOptions::default(),
        )
        .map_err(|_| refused())?;
        Ok(Self(std::sync::Arc::new(collator)))
    }

    fn compare(&self, a: &str, b: &str) -> std::cmp::Ordering {
        self.0.compare(a, b)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Direction {
    Ascending,
    Descending,
    /// Distance from the point, nearest (or with `far_first`, farthest) first.
    Distance {
        from: (f64, f64),
        far_first: bool,
    },
}

impl Ordering {
    pub fn parse(
        order_by: &str,
        order_from: Option<&str>,
        context: &Context,
    ) -> Result<Self, Problem> {
        let mut keys = Vec::new();
        for item in order_by.split(',') {
            let (path, direction) = item.split_once(';').unwrap_or((item, "asc"));
            let direction = match direction {
                "asc" => Direction::Ascending,
                "desc" => Direction::Descending,
                "dist-asc" | "dist-desc" => {
                    let from = order_from
                        .and_then(|c| serde_json::from_str::<Vec<f64>>(c).ok())
                        .filter(|c| c.len() == 2)
                        .ok_or_else(|| {
                            errors::bad_request(
                                "ordering by distance needs orderFrom=[longitude,latitude]",
                            )
                        })?;
                    Direction::Distance {
                        from: (from[0], from[1]),
                        far_first: direction == "dist-desc",
                    }
                }
                other => {
                    return Err(errors::bad_request(format!(
                        "orderBy {item:?}: {other:?} is not asc, desc, dist-asc or dist-desc"
                    )));
                }
            };
            match parse(path.trim(), context)? {
                Expr::Term(term) if term.comparison.is_none() && term.linked.is_none() => {
                    keys.push((term, direction))
                }
                _ => {
                    return Err(errors::bad_request(format!(
                        "orderBy {item:?}: an attribute path, then ;asc, ;desc, ;dist-asc or ;dist-desc"
                    )));
                }
            }
        }
        Ok(Self(keys, None))
    }

    /// The same ordering, strings compared under `collation` (by code point without one).
    pub fn collated(self, collation: Option<Collation>) -> Self {
        Self(self.0, collation)
    }

    /// Sorts the entities (stable: equal keys keep their order).
    pub fn sort<T>(&self, items: &mut [T], entity: impl Fn(&T) -> &Entity) {
        items.sort_by(|a, b| {
            for (term, direction) in &self.0 {
                let order = compare_keys(
                    sort_key(term, *direction, entity(a)),
                    sort_key(term, *direction, entity(b)),
                    (*direction, self.1.as_ref()),
                );
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
}

/// What an entity is sorted by: its rank of value type, then the value; `None` when absent.
fn sort_key(term: &Term, direction: Direction, entity: &Entity) -> Option<(u8, Value)> {
    if let Direction::Distance { from, .. } = direction {
        let geometry = term
            .values(entity)
            .into_iter()
            .find_map(|v| crate::model::geometry(v).ok())?;
        let from = geo::Point::new(from.0, from.1);
        return Some((
            0,
            Value::from(crate::geoquery::distance_metres(&from, &geometry)),
        ));
    }
    let value = term.values(entity).into_iter().next()?.clone();
    let rank = match value {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        _ => 3,
    };
    Some((rank, value))
}

fn compare_keys(
    a: Option<(u8, Value)>,
    b: Option<(u8, Value)>,
    (direction, collation): (Direction, Option<&Collation>),
) -> std::cmp::Ordering {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let (a, b) = match (a, b) {
        (None, None) => return Equal,
        // Absent values last, whichever the direction.
        (None, Some(_)) => return Greater,
        (Some(_), None) => return Less,
        (Some(a), Some(b)) => (a, b),
    };
    let order = a.0.cmp(&b.0).then_with(|| match (&a.1, &b.1) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => match collation {
            Some(collation) => collation.compare(x, y),
            None => x.cmp(y),
        },
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (x, y) => x.to_string().cmp(&y.to_string()),
    });
    match direction {
        Direction::Descending
        | Direction::Distance {
            far_first: true, ..
        } => order.reverse(),
        _ => order,
    }
}

impl Expr {
    /// The attributes (expanded names) the expression tests.
    pub fn attributes(&self) -> Vec<&str> {
        match self {
            Expr::Or(items) | Expr::And(items) => items.iter().flat_map(Expr::attributes).collect(),
            Expr::Term(term) | Expr::Absent(term) => {
                term.path.first().map(String::as_str).into_iter().collect()
            }
        }
    }
}

impl Term {
    fn matches_in(&self, entity: &Entity, links: &Links) -> bool {
        if let Some(inner) = &self.linked {
            return linked_ids(entity, &self.path[0])
                .iter()
                .filter_map(|id| links.get(id))
                .any(|target| inner.matches_in(target, links));
        }
        let values = self.values(entity);
        match &self.comparison {
            None => !values.is_empty(),
            // Clause 4.9: a Relationship's object is only equal or unequal, never ordered.
            Some((Op::Gt | Op::Ge | Op::Lt | Op::Le, _)) if self.on_relationship(entity) => false,
            // Unequal: none of the values (array items, languages under `[*]`) is equal.
            Some((Op::Ne, operand)) if self.members.last().is_some_and(|m| m == "*") => {
                !values.is_empty() && values.iter().all(|value| compare(value, Op::Ne, operand))
            }
            Some((op, operand)) => values.iter().any(|value| compare(value, *op, operand)),
        }
    }

    /// Does the term compare a Relationship's (or ListRelationship's) object?
    fn on_relationship(&self, entity: &Entity) -> bool {
        if self.path.len() != 1 || !self.members.is_empty() {
            return false;
        }
        let kind = |a: &Value| a.get("type").and_then(Value::as_str).map(str::to_owned);
        let kind = match entity.attrs.get(&self.path[0]) {
            Some(Value::Array(instances)) => instances.first().and_then(kind),
            Some(attribute) => kind(attribute),
            None => None,
        };
        matches!(kind.as_deref(), Some("Relationship" | "ListRelationship"))
    }

    /// The values the path reaches (several where attributes have several instances or values
    /// are arrays).
    pub fn values<'a>(&self, entity: &'a Entity) -> Vec<&'a Value> {
        let Some(first) = self.path.first() else {
            return Vec::new();
        };
        let mut current: Vec<&Value> = match entity.attrs.get(first) {
            Some(Value::Array(instances)) => instances.iter().collect(),
            Some(attribute) => vec![attribute],
            None => Vec::new(),
        };
        let mut at_member = false;
        for name in &self.path[1..] {
            let mut next = Vec::new();
            for attribute in current {
                if let Some(found) = attribute.get(name) {
                    if SYSTEM_MEMBERS.contains(&name.as_str()) {
                        at_member = true;
                    }
                    match found {
                        Value::Array(instances) if !at_member => next.extend(instances.iter()),
                        other => next.push(other),
                    }
                }
            }
            current = next;
        }
        let mut values: Vec<&Value> = if at_member {
            current
        } else {
            current.into_iter().filter_map(attribute_value).collect()
        };
        for member in &self.members {
            values = if member == "*" {
                // Any language of a languageMap (clause 4.9).
                values
                    .into_iter()
                    .filter_map(Value::as_object)
                    .flat_map(|map| map.values())
                    .collect()
            } else {
                values.into_iter().filter_map(|v| v.get(member)).collect()
            };
        }
        values
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect()
    }
}

/// The ids the Relationship (or ListRelationship) `name` of `entity` names.
fn linked_ids(entity: &Entity, name: &str) -> Vec<String> {
    entity
        .attrs
        .get(name)
        .map(crate::linked::targets)
        .unwrap_or_default()
}

impl Term {
    /// Gives the comparison to the innermost term of a `rel{…}` chain (or to this one).
    fn compare_innermost(&mut self, comparison: (Op, Operand)) {
        match &mut self.linked {
            Some(inner) => inner.compare_innermost(comparison),
            None => self.comparison = Some(comparison),
        }
    }

    /// How many links deep the term reaches (0: the entity's own attributes).
    fn depth(&self) -> usize {
        self.linked.as_ref().map_or(0, |inner| 1 + inner.depth())
    }
}

impl Expr {
    fn terms(&self) -> Vec<&Term> {
        match self {
            Expr::Or(items) | Expr::And(items) => items.iter().flat_map(Expr::terms).collect(),
            Expr::Term(term) | Expr::Absent(term) => vec![term],
        }
    }

    /// How many links deep the expression reaches (0: no `rel{…}` term). Asked on every
    /// change a subscription with a q hears of, so it allocates nothing.
    pub fn link_depth(&self) -> usize {
        match self {
            Expr::Or(items) | Expr::And(items) => {
                items.iter().map(Expr::link_depth).max().unwrap_or(0)
            }
            Expr::Term(term) | Expr::Absent(term) => term.depth(),
        }
    }
}

/// Reads, with `fetch`, the linked entities `expr` needs to be tested on `entity` (at most
/// [`MAX_LINKS`]; one that cannot be read leaves its terms false).
pub async fn resolve_links<F, Fut>(expr: &Expr, entity: &Entity, fetch: F) -> Links
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<Entity>>,
{
    let mut links = Links::new();
    let mut missing: std::collections::HashSet<String> = Default::default();
    // (a linked term, the id of the entity it is tested on; None: `entity` itself)
    let mut pending: Vec<(&Term, Option<String>)> = expr
        .terms()
        .into_iter()
        .filter(|t| t.linked.is_some())
        .map(|t| (t, None))
        .collect();
    while let Some((term, on)) = pending.pop() {
        let holder = match &on {
            None => Some(entity),
            Some(id) => links.get(id),
        };
        let Some(holder) = holder else {
            continue;
        };
        let targets = linked_ids(holder, &term.path[0]);
        for target in targets {
            if !links.contains_key(&target) && !missing.contains(&target) {
                if links.len() + missing.len() >= MAX_LINKS {
                    return links;
                }
                match fetch(target.clone()).await {
                    Some(found) => {
                        links.insert(target.clone(), found);
                    }
                    None => {
                        missing.insert(target.clone());
                    }
                }
            }
            if let Some(inner) = &term.linked
                && inner.linked.is_some()
            {
                pending.push((inner, Some(target)));
            }
        }
    }
    links
}

fn attribute_value(attribute: &Value) -> Option<&Value> {
    for member in crate::model::VALUE_MEMBERS {
        if let Some(value) = attribute.get(*member) {
            return Some(value);
        }
    }
    None
}

fn compare(value: &Value, op: Op, operand: &Operand) -> bool {
    match operand {
        Operand::Pattern(pattern) => {
            let text = value.as_str().is_some_and(|s| pattern.is_match(s));
            if op == Op::Matches {
                text
            } else {
                value.is_string() && !text
            }
        }
        Operand::List(items) => {
            let any = items
                .iter()
                .any(|l| order(value, l) == Some(std::cmp::Ordering::Equal));
            if op == Op::Eq { any } else { !any }
        }
        Operand::Range(low, high) => {
            let inside = matches!(
                order(value, low),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            ) && matches!(
                order(value, high),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            );
            if op == Op::Eq { inside } else { !inside }
        }
        Operand::One(literal) => {
            let Some(ordering) = order(value, literal) else {
                return op == Op::Ne;
            };
            use std::cmp::Ordering::*;
            match op {
                Op::Eq => ordering == Equal,
                Op::Ne => ordering != Equal,
                Op::Gt => ordering == Greater,
                Op::Ge => ordering != Less,
                Op::Lt => ordering == Less,
                Op::Le => ordering != Greater,
                Op::Matches | Op::NotMatches => false,
            }
        }
    }
}

/// How a stored value orders against a literal; `None` when they are not comparable.
fn order(value: &Value, literal: &Literal) -> Option<std::cmp::Ordering> {
    match (value, literal) {
        (Value::Number(n), Literal::Number(l)) => n.as_f64()?.partial_cmp(l),
        (Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (Value::String(s), Literal::Text(l) | Literal::Bare(l)) => Some(s.as_str().cmp(l.as_str())),
        (Value::String(s), Literal::Time(l)) => {
            Some(yunnao_core::time::parse_rfc3339_ms(s)?.cmp(l))
        }
        // Clause 4.9: values of different data types do not compare ("550" > 100 does not
        // match).
        _ => None,
    }
}

/// What the database can check of a `q` expression: [`prefilter`].
#[derive(Debug, Default, Clone)]
pub struct Prefilter {
    /// Conditions (SQL with `?` for each value, in order) that every entity the expression
    /// matches also satisfies, so the database narrows the candidates. Each is a CASE that is
    /// 1 where it decides the term holds, 2 where only the exact evaluation can tell (e.g. an
    /// array or a multi-instance attribute), 0 where it does not hold; on PostgreSQL a truth
    /// value (never "decided").
    pub conditions: Vec<(String, Vec<Arg<'static>>)>,
    /// The conditions are the whole expression: where none of them is 2 (SQLite), they decide
    /// the match exactly and the database may count and page.
    pub complete: bool,
}

/// Translates the terms of a top-level conjunction that compare an attribute's own value with
/// a number, a string (equality) or a boolean; other terms are left to the exact evaluation
/// in memory, which always runs unless the conditions decided every candidate.
pub fn prefilter(expr: &Expr, json: JsonSql) -> Prefilter {
    let postgres = json == JsonSql::Jsonb;
    let (terms, whole): (Vec<&Term>, bool) = match expr {
        Expr::Term(term) => (vec![term], true),
        Expr::And(items) => {
            let terms: Vec<&Term> = items
                .iter()
                .filter_map(|e| match e {
                    Expr::Term(term) => Some(term),
                    _ => None,
                })
                .collect();
            let whole = terms.len() == items.len();
            (terms, whole)
        }
        Expr::Or(_) | Expr::Absent(_) => (Vec::new(), false),
    };
    let conditions: Vec<_> = terms
        .iter()
        .filter_map(|term| term_condition(term, postgres))
        .collect();
    Prefilter {
        complete: whole && conditions.len() == terms.len() && !postgres,
        conditions,
    }
}

/// SQL text with `?` placeholders and their values, in order.
#[derive(Default)]
struct Sql {
    text: String,
    values: Vec<Arg<'static>>,
}

impl Sql {
    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: Arg<'static>) -> &mut Self {
        self.text.push('?');
        self.values.push(value);
        self
    }
}

/// What a pushed-down term compares the value with.
enum Compare {
    Number(&'static str, f64),
    Between(f64, f64),
    Text(String),
    Bool(bool),
}

fn term_condition(term: &Term, postgres: bool) -> Option<(String, Vec<Arg<'static>>)> {
    if term.path.len() != 1 || !term.members.is_empty() || term.linked.is_some() {
        return None;
    }
    let name = term.path[0].clone();
    let (op, operand) = term.comparison.as_ref()?;
    let compare = match (op, operand) {
        (op, Operand::One(Literal::Number(n))) => Compare::Number(
            match op {
                Op::Eq => "=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                _ => return None,
            },
            *n,
        ),
        (Op::Eq, Operand::Range(Literal::Number(low), Literal::Number(high))) => {
            Compare::Between(*low, *high)
        }
        (Op::Eq, Operand::One(Literal::Text(t) | Literal::Bare(t))) => Compare::Text(t.clone()),
        (Op::Eq, Operand::One(Literal::Bool(b))) => Compare::Bool(*b),
        _ => return None,
    };
    let mut sql = Sql::default();
    if postgres {
        // attrs -> name: the attribute; -> 'value': its value.
        let attribute = |sql: &mut Sql| {
            sql.push("(CAST(attrs AS JSONB) -> ")
                .bind(Arg::text(name.clone()))
                .push(")");
        };
        let value_type = |sql: &mut Sql| {
            sql.push("jsonb_typeof(");
            attribute(sql);
            sql.push(" -> 'value')");
        };
        let number = |sql: &mut Sql| {
            sql.push("CASE WHEN ");
            value_type(sql);
            sql.push(" = 'number' THEN CAST(");
            attribute(sql);
            sql.push(" ->> 'value' AS DOUBLE PRECISION) END");
        };
        sql.push("(jsonb_typeof(");
        attribute(&mut sql);
        sql.push(") = 'array' OR (jsonb_typeof(");
        attribute(&mut sql);
        sql.push(") = 'object' AND (");
        value_type(&mut sql);
        sql.push(" IS NULL OR ");
        value_type(&mut sql);
        match compare {
            Compare::Number(op, n) => {
                sql.push(" IN ('object', 'array') OR ");
                number(&mut sql);
                sql.push(" ").push(op).push(" ").bind(Arg::Number(n));
            }
            Compare::Between(low, high) => {
                sql.push(" IN ('object', 'array') OR (");
                number(&mut sql);
                sql.push(" >= ").bind(Arg::Number(low)).push(" AND ");
                number(&mut sql);
                sql.push(" <= ").bind(Arg::Number(high)).push(")");
            }
            Compare::Text(text) => {
                sql.push(" IN ('object', 'array') OR ");
                attribute(&mut sql);
                sql.push(" ->> 'value' = ").bind(Arg::text(text));
            }
            Compare::Bool(b) => {
                sql.push(" IN ('object', 'array') OR ");
                attribute(&mut sql);
                sql.push(" ->> 'value' = ").bind(Arg::text(b.to_string()));
            }
        }
        sql.push(")))");
    } else {
        let path = format!("$.\"{name}\"");
        let value_path = format!("{path}.value");
        let value_type = |sql: &mut Sql| {
            sql.push("json_type(attrs, ")
                .bind(Arg::text(value_path.clone()))
                .push(")");
        };
        let value = |sql: &mut Sql| {
            sql.push("json_extract(attrs, ")
                .bind(Arg::text(value_path.clone()))
                .push(")");
        };
        // One CASE on the attribute's JSON type, one on its value's: each JSON function runs
        // once per row (this runs over every candidate of a query, and for its count).
        sql.push("(CASE json_type(attrs, ")
            .bind(Arg::text(path))
            .push(") WHEN 'array' THEN 2 WHEN 'object' THEN CASE ");
        value_type(&mut sql);
        let not = |sql: &mut Sql, types: &[&str]| {
            for t in types {
                sql.push(" WHEN '").push(t).push("' THEN 0");
            }
        };
        match compare {
            Compare::Number(op, n) => {
                for t in ["integer", "real"] {
                    sql.push(" WHEN '").push(t).push("' THEN ");
                    value(&mut sql);
                    sql.push(" ").push(op).push(" ").bind(Arg::Number(n));
                }
                not(&mut sql, &["text", "true", "false", "null"]);
            }
            Compare::Between(low, high) => {
                for t in ["integer", "real"] {
                    sql.push(" WHEN '").push(t).push("' THEN ");
                    value(&mut sql);
                    sql.push(" >= ").bind(Arg::Number(low)).push(" AND ");
                    value(&mut sql);
                    sql.push(" <= ").bind(Arg::Number(high));
                }
                not(&mut sql, &["text", "true", "false", "null"]);
            }
            Compare::Text(text) => {
                sql.push(" WHEN 'text' THEN ");
                value(&mut sql);
                sql.push(" = ").bind(Arg::text(text));
                not(&mut sql, &["integer", "real", "true", "false", "null"]);
            }
            Compare::Bool(b) => {
                sql.push(if b {
                    " WHEN 'true' THEN 1 WHEN 'false' THEN 0"
                } else {
                    " WHEN 'false' THEN 1 WHEN 'true' THEN 0"
                });
                not(&mut sql, &["text", "integer", "real", "null"]);
            }
        }
        // No value member, or an object or array value: let the exact evaluation decide. A
        // missing attribute: no.
        sql.push(" ELSE 2 END ELSE 0 END)");
    }
    Some((sql.text, sql.values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_entity;
    use serde_json::json;

    #[test]
    fn linked_entity_terms_test_the_entities_relationships_name() {
        let context = Context::core();
        let entity = |value: serde_json::Value| {
            parse_entity(value, &context, "2026-11-30T08:00:00Z").expect("entity")
        };
        let parking = entity(
            json!({"id": "urn:ngsi-ld:OffStreetParking:1", "type": "OffStreetParking",
            "refOperator": {"object": "urn:ngsi-ld:Organization:7"}}),
        );
        let mut links = Links::new();
        links.insert(
            "urn:ngsi-ld:Organization:7".into(),
            entity(
                json!({"id": "urn:ngsi-ld:Organization:7", "type": "Organization",
                "employees": 40, "address": {"value": {"district": "市南区"}},
                "parent": {"object": "urn:ngsi-ld:Organization:1"}}),
            ),
        );
        links.insert(
            "urn:ngsi-ld:Organization:1".into(),
            entity(json!({"id": "urn:ngsi-ld:Organization:1", "type": "Organization", "employees": 900})),
        );
        for (q, depth, expected) in [
            ("refOperator{employees}>30", 1, true),
            ("refOperator{employees}>50", 1, false),
            ("refOperator{address[district]}==\"市南区\"", 1, true),
            ("refOperator{parent{employees}}==900", 2, true),
            ("refOperator{parent{employees}}<900", 2, false),
            ("!refOperator{budget}", 1, true),
            ("refOperator{budget}", 1, false),
            ("missing{employees}>1", 1, false),
            (
                "refOperator{employees}>50|refOperator{parent{employees}}>50",
                2,
                true,
            ),
        ] {
            let parsed = parse(q, &context).expect(q);
            assert_eq!(parsed.link_depth(), depth, "{q}");
            assert_eq!(parsed.matches_in(&parking, &links), expected, "{q}");
            // Unresolved, a linked term never holds.
            assert!(!parsed.matches(&parking) || q.starts_with('!'), "{q}");
        }
        for bad in [
            "refOperator{employees>1",
            "refOperator.x{employees}>1",
            "a{}",
        ] {
            assert!(parse(bad, &context).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_match_as_the_specification_says() {
        let context = Context::core();
        let entity = parse_entity(
            json!({"id": "urn:ngsi-ld:OffStreetParking:1", "type": "OffStreetParking",
                "name": "香港中路停車場", "availableSpotNumber": {"value": 121, "observedAt": "2026-11-29T07:00:00Z",
                    "reliability": 0.7},
                "totalSpotNumber": 200, "status": ["open", "free"], "isOpen": true,
                "address": {"value": {"district": "市南区", "street": "香港中路"}},
                "refOperator": {"object": "urn:ngsi-ld:Organization:7"},
                "label": {"languageMap": {"zh": "停车场", "en": "car park"}}}),
            &context,
            "2026-11-29T08:00:00Z",
        )
        .expect("entity");
        let cases = [
            ("availableSpotNumber>100", true),
            ("availableSpotNumber>121", false),
            ("availableSpotNumber>=121", true),
            ("availableSpotNumber==100..150", true),
            ("availableSpotNumber!=100..150", false),
            ("availableSpotNumber==120,121,122", true),
            ("availableSpotNumber<50|totalSpotNumber==200", true),
            ("availableSpotNumber<50;totalSpotNumber==200", false),
            (
                "(availableSpotNumber<50|isOpen==true);totalSpotNumber==200",
                true,
            ),
            ("name==\"香港中路停車場\"", true),
            ("!heading;totalSpotNumber==200", true),
            ("!totalSpotNumber", false),
            // Clause 4.9: a language of a languageMap, any language, and no language equal.
            ("label[en]==\"car park\"", true),
            ("label[en]==\"停车场\"", false),
            ("label[*]==\"停车场\"", true),
            ("label[*]!=\"停车场\"", false),
            ("label[*]!=\"garage\"", true),
            // A Relationship's object is equal or unequal, never ordered.
            ("refOperator==\"urn:ngsi-ld:Organization:7\"", true),
            ("refOperator>\"urn:a\"", false),
            ("refOperator<\"urn:z\"", false),
            ("name~=香港.*", true),
            ("name!~=^北京", true),
            ("status==\"free\"", true),
            ("status==\"closed\"", false),
            ("isOpen==false", false),
            ("address[district]==\"市南区\"", true),
            ("address[district]==\"崂山区\"", false),
            ("availableSpotNumber.reliability>0.5", true),
            ("availableSpotNumber.observedAt>2026-11-29T06:00:00Z", true),
            ("availableSpotNumber.observedAt>2026-11-29T07:30:00Z", false),
            ("refOperator==urn:ngsi-ld:Organization:7", true),
            ("refOperator", true),
            ("missing", false),
            ("missing!=3", false),
        ];
        for (q, expected) in cases {
            let expr = parse(q, &context).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(expr.matches(&entity), expected, "{q}");
        }
    }

    /// The SQLite conditions never contradict the exact evaluation, and where they decide
    /// (no 2) they are the exact evaluation: the database may then count and page.
    #[tokio::test]
    async fn database_conditions_decide_only_what_they_decide_exactly() {
        let context = Context::core();
        let entities = [
            json!({"capacity": 45, "occupancy": "free", "open": true}),
            json!({"capacity": 40.0, "occupancy": "occupied", "open": false}),
            json!({"capacity": 12, "occupancy": {"value": "free", "observedAt": "2026-11-29T07:00:00Z"}}),
            json!({"capacity": "45", "occupancy": ["free", "occupied"]}),
            json!({"capacity": [41, 3], "occupancy": {"value": {"state": "free"}}}),
            json!({"capacity": [{"type": "Property", "value": 50, "datasetId": "urn:a"},
                {"type": "Property", "value": 5, "datasetId": "urn:b"}]}),
            json!({"capacity": {"type": "Relationship", "object": "urn:ngsi-ld:Thing:1"}, "open": "true"}),
            json!({"occupancy": "free"}),
        ];
        let queries = [
            "capacity>=40",
            "capacity>40;occupancy==\"free\"",
            "capacity==40..50",
            "capacity<13",
            "capacity==45",
            "occupancy==\"free\"",
            "occupancy==free",
            "open==true",
            "open==false",
            "capacity>=40;open==true",
        ];
        let db = yunnao_store::Db::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let mut undecided_seen = 0;
        for (n, attrs) in entities.iter().enumerate() {
            let mut entity = attrs.clone();
            entity["id"] = json!(format!("urn:ngsi-ld:Spot:{n}"));
            entity["type"] = json!("Spot");
            let entity = parse_entity(entity, &context, "2026-11-29T08:00:00Z").expect("entity");
            let text = serde_json::to_string(&entity.attrs).expect("json");
            for q in queries {
                let expr = parse(q, &context).expect(q);
                let prefilter = prefilter(&expr, JsonSql::Json1);
                assert!(prefilter.complete, "{q}");
                let mut decided = Some(true);
                for (condition, values) in &prefilter.conditions {
                    let mut numbered = String::new();
                    for (i, piece) in condition.split('?').enumerate() {
                        if i > 0 {
                            numbered.push_str(&format!("${i}"));
                        }
                        numbered.push_str(piece);
                    }
                    let sql = format!(
                        "SELECT {numbered} FROM (SELECT ${} AS attrs)",
                        values.len() + 1
                    );
                    let mut params = values.clone();
                    params.push(Arg::text(text.clone()));
                    let (outcome,): (i64,) = db
                        .fetch_one(&sql, &params)
                        .await
                        .unwrap_or_else(|e| panic!("{q}: {sql}: {e}"));
                    decided = match (decided, outcome) {
                        (_, 0) | (Some(false), _) => Some(false),
                        (Some(true), 1) => Some(true),
                        _ => None,
                    };
                    if outcome == 0 {
                        break;
                    }
                }
                let exact = expr.matches(&entity);
                match decided {
                    Some(decision) => assert_eq!(decision, exact, "{q} on {attrs}"),
                    None => undecided_seen += 1,
                }
            }
        }
        assert!(
            undecided_seen > 0,
            "arrays and multi-instance attributes are left undecided"
        );
    }

    #[test]
    fn malformed_queries_are_bad_requests() {
        for q in [
            "", "a==", "(a==1", "a[b==1", "a=1", "a~=(", "a>1,2", ";a==1", "a==\"x", "a>>1",
            "a==<2",
        ] {
            let error = parse(q, &Context::core()).expect_err(q);
            assert_eq!(error.status, 400, "{q}");
        }
    }

    #[test]
    fn nesting_terms_and_length_are_bounded() {
        let core = Context::core();
        let nested = |depth: usize| format!("{}a==1{}", "(".repeat(depth), ")".repeat(depth));
        assert!(parse(&nested(MAX_DEPTH), &core).is_ok());
        for q in [
            nested(MAX_DEPTH + 1),
            nested(5_000),
            "(".repeat(100_000),
            format!("{}b}}", "a{".repeat(MAX_DEPTH + 1)),
        ] {
            let error = parse(&q, &core).expect_err("too deep");
            assert_eq!(error.status, 400);
            assert!(
                error.detail.as_deref().is_some_and(|d| d.len() < 400),
                "bounded message"
            );
        }
        let linked = format!("{}b{}==1", "a{".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&linked, &core).is_ok());
        let terms = |n: usize| vec!["a==1"; n].join(";");
        assert!(parse(&terms(MAX_TERMS), &core).is_ok());
        assert_eq!(
            parse(&terms(MAX_TERMS + 1), &core)
                .map(|_| ())
                .map_err(|e| e.status),
            Err(400)
        );
        assert_eq!(
            parse(&"a".repeat(MAX_LENGTH + 1), &core)
                .map(|_| ())
                .map_err(|e| e.status),
            Err(400)
        );
    }
}
