//! What a person reads instead of codes: departments and device types by name in the page's
//! language, and every time in China Standard Time in one format.

use crate::Web;
use crate::text::Lang;
use std::collections::HashMap;

/// Names of departments and device types, read once per page.
pub(crate) struct Names {
    lang: Lang,
    departments: HashMap<String, (String, String)>,
    profiles: HashMap<String, (String, String)>,
    categories: HashMap<String, (String, String)>,
}

impl Names {
    pub(crate) async fn load(web: &Web, lang: Lang) -> Names {
        let departments = web
            .identity
            .departments()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.code, (d.name_zh, d.name_en)))
            .collect();
        let profiles = web
            .sensing
            .profiles()
            .iter()
            .map(|p| (p.code.clone(), (p.name_zh.clone(), p.name_en.clone())))
            .collect();
        let categories = web
            .governance
            .categories()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.service_code, (c.name, c.name_en)))
            .collect();
        Names {
            lang,
            departments,
            profiles,
            categories,
        }
    }

    fn pick(&self, found: Option<&(String, String)>, code: &str) -> String {
        match found {
            Some((zh, _)) if self.lang == Lang::Zh => zh.clone(),
            Some((_, en)) => en.clone(),
            None => code.to_owned(),
        }
    }

    /// A department's name (its code when it is not known).
    pub(crate) fn department(&self, code: &str) -> String {
        self.pick(self.departments.get(code), code)
    }

    /// Every department as (code, name), by name.
    pub(crate) fn departments(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .departments
            .keys()
            .map(|code| (code.clone(), self.department(code)))
            .collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        all
    }

    /// A case category's name (its code when it is not known).
    pub(crate) fn category(&self, service_code: &str) -> String {
        self.pick(self.categories.get(service_code), service_code)
    }

    /// The people named on a case's history by their display names, `系统` for the system.
    pub(crate) async fn people(
        web: &Web,
        lang: Lang,
        usernames: impl Iterator<Item = &str>,
    ) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for username in usernames {
            if out.contains_key(username) {
                continue;
            }
            let shown = if username == "system" {
                crate::text::t(lang, "system").to_owned()
            } else {
                match web.identity.user_by_username(username).await {
                    Ok(Some(user)) => user.display_name,
                    _ => username.to_owned(),
                }
            };
            out.insert(username.to_owned(), shown);
        }
        out
    }

    /// A device type's name (its code when it is not known).
    pub(crate) fn profile(&self, code: &str) -> String {
        self.pick(self.profiles.get(code), code)
    }
}

/// A time as every page shows it: China Standard Time as `2026-12-07 17:00`, whatever zone the
/// API wrote it in (the page header says once that times are Beijing time); `—` for none.
pub(crate) fn local_time(text: Option<&str>) -> String {
    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&yunnao_governance::calendar::cst())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "—".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_shown_in_china_standard_time() {
        assert_eq!(
            super::local_time(Some("2026-12-07T09:00:30Z")),
            "2026-12-07 17:00"
        );
        assert_eq!(
            super::local_time(Some("2026-12-07T23:30:00.123+08:00")),
            "2026-12-07 23:30"
        );
        assert_eq!(super::local_time(Some("2026-12-07T17:00")), "—");
        assert_eq!(super::local_time(None), "—");
    }
}
