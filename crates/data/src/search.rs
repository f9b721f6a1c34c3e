//! Full-text search of the catalogue, Chinese included, with facets. Text is cut into tokens:
//! runs of ASCII letters and digits as lower-cased words, and Chinese (any other letter) as
//! overlapping character bigrams plus single characters, so that `空气质量` finds `空气质量日报`
//! and `水质` finds `重点水体水质监测` without a dictionary. A query matches a dataset when every
//! one of its tokens is in it; matches are scored by where the tokens stand (title 3, keywords
//! and themes 2, description and field descriptions 1). The index is in memory (an inverted
//! list per token), rebuilt when the catalogue changes.

use crate::{Dataset, Entry};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The tokens of `text`.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut han: Vec<char> = Vec::new();
    let flush_han = |han: &mut Vec<char>, out: &mut Vec<String>| {
        for (i, c) in han.iter().enumerate() {
            out.push(c.to_string());
            if let Some(next) = han.get(i + 1) {
                out.push(format!("{c}{next}"));
            }
        }
        han.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            flush_han(&mut han, &mut out);
            word.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            han.push(c);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            flush_han(&mut han, &mut out);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    flush_han(&mut han, &mut out);
    out
}

/// The tokens a query must all match: for a Chinese run, its bigrams (or the one character).
fn query_tokens(text: &str) -> Vec<String> {
    let all = tokens(text);
    let mut out: Vec<String> = all
        .iter()
        .filter(|t| t.chars().count() >= 2 || t.chars().all(|c| c.is_ascii_alphanumeric()))
        .cloned()
        .collect();
    // A lone Chinese character (no bigram around it) still counts.
    for t in &all {
        if t.chars().count() == 1
            && !t.chars().all(|c| c.is_ascii_alphanumeric())
            && !out.iter().any(|o| o.contains(t.as_str()))
        {
            out.push(t.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Default)]
pub struct Index {
    /// token → (dataset position, weight)
    postings: HashMap<String, Vec<(usize, u32)>>,
}

impl Index {
    pub fn build<'a>(datasets: impl Iterator<Item = &'a Dataset>) -> Index {
        let mut postings: HashMap<String, HashMap<usize, u32>> = HashMap::new();
        for (i, d) in datasets.enumerate() {
            let mut add = |text: &str, weight: u32| {
                for t in tokens(text) {
                    *postings.entry(t).or_default().entry(i).or_default() += weight;
                }
            };
            add(&d.title_zh, 3);
            add(&d.title_en, 3);
            add(&d.id, 3);
            for k in d.keywords.iter().chain(&d.themes) {
                add(k, 2);
            }
            add(&d.description_zh, 1);
            add(&d.description_en, 1);
            add(&d.source_system, 1);
            for f in &d.fields {
                add(&f.description_zh, 1);
                add(&f.name, 1);
            }
        }
        Index {
            postings: postings
                .into_iter()
                .map(|(t, m)| (t, m.into_iter().collect()))
                .collect(),
        }
    }

    /// The datasets matching `query` among those `visible`, scored, filtered, sorted and paged,
    /// with the facets of all that matched.
    pub fn search(
        &self,
        entries: &[Entry],
        query: &Query,
        visible: impl Fn(&Dataset) -> bool,
    ) -> Found {
        let wanted = query_tokens(query.text.as_deref().unwrap_or(""));
        let mut scores: Vec<(usize, u32)> = if wanted.is_empty() {
            (0..entries.len()).map(|i| (i, 0)).collect()
        } else {
            let mut acc: Option<HashMap<usize, u32>> = None;
            for t in &wanted {
                let Some(list) = self.postings.get(t) else {
                    acc = Some(HashMap::new());
                    break;
                };
                let next: HashMap<usize, u32> = match acc {
                    None => list.iter().copied().collect(),
                    Some(prev) => list
                        .iter()
                        .filter_map(|(i, w)| prev.get(i).map(|p| (*i, p + w)))
                        .collect(),
                };
                acc = Some(next);
            }
            acc.unwrap_or_default().into_iter().collect()
        };
        scores.retain(|(i, _)| {
            entries.get(*i).is_some_and(|e| {
                visible(&e.dataset) && query.filters.iter().all(|f| f.holds(&e.dataset))
            })
        });
        let mut facets: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
        for (i, _) in &scores {
            let d = &entries[*i].dataset;
            let mut count = |facet: &'static str, value: &str| {
                *facets
                    .entry(facet)
                    .or_default()
                    .entry(value.to_owned())
                    .or_default() += 1;
            };
            count("department", &d.department);
            count("sharing", &d.sharing);
            count("level", &d.level);
            count("frequency", &d.frequency);
            count("licence", &d.licence);
            for t in &d.themes {
                count("theme", t);
            }
            for k in &d.keywords {
                count("keyword", k);
            }
        }
        match query.sort {
            Sort::Relevance => scores.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| entries[b.0].modified_at.cmp(&entries[a.0].modified_at))
                    .then_with(|| entries[a.0].dataset.id.cmp(&entries[b.0].dataset.id))
            }),
            Sort::Modified => scores.sort_by(|a, b| {
                entries[b.0]
                    .modified_at
                    .cmp(&entries[a.0].modified_at)
                    .then_with(|| entries[a.0].dataset.id.cmp(&entries[b.0].dataset.id))
            }),
            Sort::Name => {
                scores.sort_by(|a, b| entries[a.0].dataset.id.cmp(&entries[b.0].dataset.id))
            }
            Sort::Title => scores.sort_by(|a, b| {
                entries[a.0]
                    .dataset
                    .title_zh
                    .cmp(&entries[b.0].dataset.title_zh)
            }),
        }
        let count = scores.len();
        let results = scores
            .into_iter()
            .skip(query.start)
            .take(query.rows)
            .map(|(i, score)| (entries[i].clone(), score))
            .collect();
        Found {
            count,
            results,
            facets: facets
                .into_iter()
                .map(|(k, v)| {
                    let mut items: Vec<(String, usize)> = v.into_iter().collect();
                    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    (k, items)
                })
                .collect(),
        }
    }
}

/// One facet filter: `field` equals `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: String,
    pub value: String,
}

/// The facets a filter may name.
pub const FACETS: [&str; 7] = [
    "department",
    "theme",
    "keyword",
    "sharing",
    "level",
    "frequency",
    "licence",
];

impl Filter {
    fn holds(&self, d: &Dataset) -> bool {
        let v = self.value.as_str();
        match self.field.as_str() {
            "department" => d.department == v,
            "theme" => d.themes.iter().any(|t| t == v),
            "keyword" => d.keywords.iter().any(|k| k == v),
            "sharing" => d.sharing == v,
            "level" => d.level == v,
            "frequency" => d.frequency == v,
            "licence" => d.licence == v,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Sort {
    #[default]
    Relevance,
    Modified,
    Name,
    Title,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub text: Option<String>,
    pub filters: Vec<Filter>,
    pub sort: Sort,
    pub start: usize,
    pub rows: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            text: None,
            filters: Vec::new(),
            sort: Sort::Relevance,
            start: 0,
            rows: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub count: usize,
    /// The page: each entry with its score.
    pub results: Vec<(Entry, u32)>,
    /// facet → (value, count), most frequent first.
    pub facets: BTreeMap<&'static str, Vec<(String, usize)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_cut_into_bigrams_and_words_into_words() {
        assert_eq!(
            tokens("空气质量 PM2.5"),
            ["空", "空气", "气", "气质", "质", "质量", "量", "pm2", "5"]
        );
        assert_eq!(query_tokens("空气质量"), ["气质", "空气", "质量"]);
        assert_eq!(query_tokens("水"), ["水"]);
    }
}
