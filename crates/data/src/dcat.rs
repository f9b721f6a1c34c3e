//! The catalogue as DCAT-AP 3: JSON-LD (`catalog.jsonld`) and Turtle (`catalog.ttl`), from one
//! list of statements so the two say the same. Frequencies and access rights use the EU
//! Publications Office's authority tables (DCAT-AP's controlled vocabularies); a publisher is
//! the department (a `foaf:Agent`), the schema's fields are not exported (they are in the API).
//! Every object is typed as DCAT-AP 3's SHACL ranges ask (themes are concepts of the hub's
//! scheme, licences licence documents, places locations); a dataset that is served has a
//! distribution whose access URL is its rows API.

use crate::Entry;
use std::collections::HashMap;

const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCT: &str = "http://purl.org/dc/terms/";
const FOAF: &str = "http://xmlns.com/foaf/0.1/";
const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
const RDFS_LABEL: &str = "http://www.w3.org/2000/01/rdf-schema#label";
const SKOS: &str = "http://www.w3.org/2004/02/skos/core#";
const JSON_MEDIA_TYPE: &str = "http://www.iana.org/assignments/media-types/application/json";

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

/// A licence as a `dct:LicenseDocument`: the EU authority table's IRI where there is one,
/// else one of ours.
fn licence_iri(base: &str, licence: &str) -> String {
    let code = match licence {
        "CC-BY-4.0" => Some("CC_BY_4_0"),
        "CC-BY-SA-4.0" => Some("CC_BY_SA_4_0"),
        "CC0-1.0" => Some("CC0"),
        _ => None,
    };
    match code {
        Some(code) => format!("http://publications.europa.eu/resource/authority/licence/{code}"),
        None => format!("{base}/api/v1/data/licences/{}", percent(licence)),
    }
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
    // Nodes named by many datasets, described once after them (DCAT-AP's ranges: a theme is
    // a skos:Concept, a licence a dct:LicenseDocument, a place a dct:Location, …).
    let mut themes: std::collections::BTreeMap<String, String> = Default::default();
    let mut licences: std::collections::BTreeMap<String, String> = Default::default();
    let mut places: std::collections::BTreeMap<String, String> = Default::default();
    let mut frequencies: std::collections::BTreeSet<String> = Default::default();
    let mut rights: std::collections::BTreeSet<String> = Default::default();
    let mut has_distribution = false;
    let scheme = Term::Iri(format!("{base}/api/v1/data/themes"));
    out.push((
        catalog.clone(),
        format!("{DCAT}themeTaxonomy"),
        scheme.clone(),
    ));
    out.push((
        scheme.clone(),
        RDF_TYPE.into(),
        Term::Iri(format!("{SKOS}ConceptScheme")),
    ));
    out.push((
        scheme.clone(),
        format!("{DCT}title"),
        Term::Lang("青岛市公共数据主题分类".into(), "zh"),
    ));
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
            let theme = format!("{base}/api/v1/data/themes/{}", percent(t));
            out.push((s.clone(), format!("{DCAT}theme"), Term::Iri(theme.clone())));
            themes.entry(theme).or_insert_with(|| t.clone());
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
        let licence = licence_iri(base, &d.licence);
        out.push((
            s.clone(),
            format!("{DCT}license"),
            Term::Iri(licence.clone()),
        ));
        licences.entry(licence).or_insert_with(|| d.licence.clone());
        if !d.spatial.is_empty() {
            let place = format!("{base}/api/v1/data/places/{}", percent(&d.spatial));
            out.push((s.clone(), format!("{DCT}spatial"), Term::Iri(place.clone())));
            places.entry(place).or_insert_with(|| d.spatial.clone());
        }
        frequencies.insert(frequency_iri(&d.frequency));
        rights.insert(access_iri(&d.sharing));
        if d.sharing != "none" {
            // Served through the rows API (open to all, conditional with a grant).
            let distribution = Term::Blank(format!("d-{}", d.id));
            out.push((
                s.clone(),
                format!("{DCAT}distribution"),
                distribution.clone(),
            ));
            out.push((
                distribution.clone(),
                RDF_TYPE.into(),
                Term::Iri(format!("{DCAT}Distribution")),
            ));
            out.push((
                distribution.clone(),
                format!("{DCAT}accessURL"),
                Term::Iri(format!("{base}/api/v1/data/datasets/{}/rows", d.id)),
            ));
            out.push((
                distribution.clone(),
                format!("{DCT}title"),
                Term::Lang(
                    if d.source.is_live() {
                        format!("{}(实时视图接口)", d.title_zh)
                    } else {
                        format!("{}(数据接口)", d.title_zh)
                    },
                    "zh",
                ),
            ));
            out.push((
                distribution.clone(),
                format!("{DCAT}mediaType"),
                Term::Iri(JSON_MEDIA_TYPE.into()),
            ));
            out.push((
                distribution,
                format!("{DCT}license"),
                Term::Iri(licence_iri(base, &d.licence)),
            ));
            has_distribution = true;
        }
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
    for (theme, label) in themes {
        let theme = Term::Iri(theme);
        out.push((
            theme.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{SKOS}Concept")),
        ));
        out.push((
            theme.clone(),
            format!("{SKOS}prefLabel"),
            Term::Lang(label, "zh"),
        ));
        out.push((theme, format!("{SKOS}inScheme"), scheme.clone()));
    }
    for (licence, label) in licences {
        let licence = Term::Iri(licence);
        out.push((
            licence.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCT}LicenseDocument")),
        ));
        out.push((licence, RDFS_LABEL.into(), Term::Plain(label)));
    }
    for (place, label) in places {
        let place = Term::Iri(place);
        out.push((
            place.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCT}Location")),
        ));
        out.push((place, format!("{SKOS}prefLabel"), Term::Lang(label, "zh")));
    }
    for frequency in frequencies {
        out.push((
            Term::Iri(frequency),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCT}Frequency")),
        ));
    }
    for right in rights {
        out.push((
            Term::Iri(right),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCT}RightsStatement")),
        ));
    }
    if has_distribution {
        out.push((
            Term::Iri(JSON_MEDIA_TYPE.into()),
            RDF_TYPE.into(),
            Term::Iri(format!("{DCT}MediaType")),
        ));
    }
    for code in publishers {
        let agent = Term::Iri(format!("{base}/api/v1/departments/{code}"));
        out.push((
            agent.clone(),
            RDF_TYPE.into(),
            Term::Iri(format!("{FOAF}Agent")),
        ));
        // foaf:name is mandatory for an agent: the code where the department is unknown.
        match departments.get(code) {
            Some((zh, en)) => {
                out.push((
                    agent.clone(),
                    format!("{FOAF}name"),
                    Term::Lang(zh.clone(), "zh"),
                ));
                out.push((agent, format!("{FOAF}name"), Term::Lang(en.clone(), "en")));
            }
            None => out.push((agent, format!("{FOAF}name"), Term::Plain(code.to_owned()))),
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
