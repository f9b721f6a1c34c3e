//! The catalogue as DCAT-AP 3: JSON-LD (`catalog.jsonld`) and Turtle (`catalog.ttl`), from one
//! list of statements so the two say the same. Frequencies and access rights use the EU
//! Publications Office's authority tables (DCAT-AP's controlled vocabularies); a publisher is
//! the department (a `foaf:Agent`), the schema's fields are not exported (they are in the API).

use crate::Entry;
use std::collections::HashMap;

const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCT: &str = "http://purl.org/dc/terms/";
const FOAF: &str = "http://xmlns.com/foaf/0.1/";
const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";

/// An RDF term: an IRI, a blank node, or a literal with a language or a datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Iri(String),
    Blank(String),
    Lang(String, &'static str),
    Typed(String, &'static str),
    Plain(String),
}

pub type Triple = (Term, String, Term);

fn frequency_iri(frequency: &str) -> String {
    let code = match frequency {
        "realtime" => "UPDATE_CONT",
        "daily" => "DAILY",
        "weekly" => "WEEKLY",
        "monthly" => "MONTHLY",
        "quarterly" => "QUARTERLY",
        "yearly" => "ANNUAL",
        "never" => "NEVER",
        _ => "IRREG",
    };
    format!("http://publications.europa.eu/resource/authority/frequency/{code}")
}

fn access_iri(sharing: &str) -> String {
    let code = match sharing {
        "open" => "PUBLIC",
        "conditional" => "RESTRICTED",
        _ => "NON_PUBLIC",
    };
    format!("http://publications.europa.eu/resource/authority/access-right/{code}")
}

/// The catalogue's statements, with `base` the platform's public URL.
pub fn triples(
    base: &str,
    entries: &[Entry],
    departments: &HashMap<String, (String, String)>,
) -> Vec<Triple> {
    let base = base.trim_end_matches('/');
    let catalog = Term::Iri(format!("{base}/api/v1/data/catalog"));
    let mut out: Vec<Triple> = vec![
        (
            catalog.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCAT}Catalog")),
        ),
        (
            catalog.clone(),
            format!("{DCT}title"),
            Term::Lang("青岛市公共数据目录".into(), "zh"),
        ),
        (
            catalog.clone(),
            format!("{DCT}title"),
            Term::Lang("Qingdao public data catalogue".into(), "en"),
        ),
        (
            catalog.clone(),
            format!("{DCT}description"),
            Term::Lang("青岛城市数据中枢登记的各部门数据资源。".into(), "zh"),
        ),
        (
            catalog.clone(),
            format!("{DCT}publisher"),
            Term::Iri(format!("{base}/api/v1/departments/bigdata")),
        ),
    ];
    let mut publishers: Vec<&str> = vec!["bigdata"];
    for entry in entries {
        let d = &entry.dataset;
        let s = Term::Iri(format!("{base}/api/v1/data/datasets/{}", d.id));
        out.push((catalog.clone(), format!("{DCAT}dataset"), s.clone()));
        out.push((
            s.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCAT}Dataset")),
        ));
        out.push((
            s.clone(),
            format!("{DCT}identifier"),
            Term::Plain(d.id.clone()),
        ));
        out.push((
            s.clone(),
            format!("{DCT}title"),
            Term::Lang(d.title_zh.clone(), "zh"),
        ));
        if !d.title_en.is_empty() {
            out.push((
                s.clone(),
                format!("{DCT}title"),
                Term::Lang(d.title_en.clone(), "en"),
            ));
        }
        out.push((
            s.clone(),
            format!("{DCT}description"),
            Term::Lang(d.description_zh.clone(), "zh"),
        ));
        if !d.description_en.is_empty() {
            out.push((
                s.clone(),
                format!("{DCT}description"),
                Term::Lang(d.description_en.clone(), "en"),
            ));
        }
        for k in &d.keywords {
            out.push((
                s.clone(),
                format!("{DCAT}keyword"),
                Term::Lang(k.clone(), "zh"),
            ));
        }
        for t in &d.themes {
            out.push((
                s.clone(),
                format!("{DCAT}theme"),
                Term::Iri(format!("{base}/api/v1/data/themes/{}", percent(t))),
            ));
        }
        out.push((
            s.clone(),
            format!("{DCT}publisher"),
            Term::Iri(format!("{base}/api/v1/departments/{}", d.department)),
        ));
        if !publishers.contains(&d.department.as_str()) {
            publishers.push(&d.department);
        }
        out.push((
            s.clone(),
            format!("{DCT}accrualPeriodicity"),
            Term::Iri(frequency_iri(&d.frequency)),
        ));
        out.push((
            s.clone(),
            format!("{DCT}accessRights"),
            Term::Iri(access_iri(&d.sharing)),
        ));
        out.push((
            s.clone(),
            format!("{DCT}license"),
            Term::Plain(d.licence.clone()),
        ));
        out.push((
            s.clone(),
            format!("{DCT}spatial"),
            Term::Lang(d.spatial.clone(), "zh"),
        ));
        out.push((
            s.clone(),
            format!("{DCT}issued"),
            Term::Typed(entry.created_at.clone(), "dateTime"),
        ));
        out.push((
            s.clone(),
            format!("{DCT}modified"),
            Term::Typed(entry.modified_at.clone(), "dateTime"),
        ));
        if d.temporal_start.is_some() || d.temporal_end.is_some() {
            let period = Term::Blank(format!("t-{}", d.id));
            out.push((s.clone(), format!("{DCT}temporal"), period.clone()));
            out.push((
                period.clone(),
                RDF_TYPE.into(),
                Term::Iri(format!("{DCT}PeriodOfTime")),
            ));
            if let Some(start) = &d.temporal_start {
                out.push((
                    period.clone(),
                    format!("{DCAT}startDate"),
                    Term::Typed(start.clone(), "date"),
                ));
            }
            if let Some(end) = &d.temporal_end {
                out.push((
                    period.clone(),
                    format!("{DCAT}endDate"),
                    Term::Typed(end.clone(), "date"),
                ));
            }
        }
        let contact = Term::Blank(format!("c-{}", d.id));
        out.push((s.clone(), format!("{DCAT}contactPoint"), contact.clone()));
        out.push((
            contact.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{VCARD}Kind")),
        ));
        out.push((
            contact,
            format!("{VCARD}fn"),
            Term::Lang(d.contact.clone(), "zh"),
        ));
    }
    for code in publishers {
        let agent = Term::Iri(format!("{base}/api/v1/departments/{code}"));
        out.push((
            agent.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{FOAF}Agent")),
        ));
        if let Some((zh, en)) = departments.get(code) {
            out.push((
                agent.clone(),
                format!("{FOAF}name"),
                Term::Lang(zh.clone(), "zh"),
            ));
            out.push((agent, format!("{FOAF}name"), Term::Lang(en.clone(), "en")));
        }
    }
    out
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn escape_turtle(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn turtle_term(term: &Term) -> String {
    match term {
        // IRIs here are made of our base, slugs and percent-encoded text: no `>` in them.
        Term::Iri(iri) => format!("<{}>", iri.replace('>', "%3E")),
        Term::Blank(id) => format!(
            "_:{}",
            id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ),
        Term::Lang(text, lang) => format!("\"{}\"@{lang}", escape_turtle(text)),
        Term::Typed(text, datatype) => format!("\"{}\"^^<{XSD}{datatype}>", escape_turtle(text)),
        Term::Plain(text) => format!("\"{}\"", escape_turtle(text)),
    }
}

/// N-Triples-style Turtle (one statement a line), which every Turtle parser reads.
pub fn turtle(triples: &[Triple]) -> String {
    let mut out = String::from("# DCAT-AP 3 export of the yunnao data hub's catalogue\n");
    for (s, p, o) in triples {
        out.push_str(&format!("{} <{p}> {} .\n", turtle_term(s), turtle_term(o)));
    }
    out
}

/// JSON-LD in expanded form: nodes with full IRIs, so it needs no remote context to be read.
pub fn json_ld(triples: &[Triple]) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut nodes: Vec<(String, Map<String, Value>)> = Vec::new();
    let id_of = |t: &Term| match t {
        Term::Iri(i) => i.clone(),
        Term::Blank(b) => format!("_:{b}"),
        _ => String::new(),
    };
    for (s, p, o) in triples {
        let sid = id_of(s);
        let pos = match nodes.iter().position(|(id, _)| *id == sid) {
            Some(pos) => pos,
            None => {
                let mut node = Map::new();
                node.insert("@id".into(), Value::String(sid.clone()));
                nodes.push((sid.clone(), node));
                nodes.len() - 1
            }
        };
        let node = &mut nodes[pos].1;
        if p == RDF_TYPE {
            let types = node.entry("@type").or_insert_with(|| json!([]));
            if let (Value::Array(list), Term::Iri(t)) = (types, o) {
                list.push(Value::String(t.clone()));
            }
            continue;
        }
        let value = match o {
            Term::Iri(_) | Term::Blank(_) => json!({"@id": id_of(o)}),
            Term::Lang(text, lang) => json!({"@value": text, "@language": lang}),
            Term::Typed(text, datatype) => {
                json!({"@value": text, "@type": format!("{XSD}{datatype}")})
            }
            Term::Plain(text) => json!({"@value": text}),
        };
        if let Value::Array(list) = node.entry(p.clone()).or_insert_with(|| json!([])) {
            list.push(value);
        }
    }
    Value::Array(nodes.into_iter().map(|(_, n)| Value::Object(n)).collect())
}
