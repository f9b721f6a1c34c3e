//! What the hub pages (services, codes) share: the text in the user's language, the signed-in
//! shell (viewer, language, header, department names), and a form's answer (back to the page,
//! or the refusal) with its audit note.

use crate::text::Lang;
use crate::workbench::header;
use crate::{Web, lang};
use axum::Extension;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_identity::{AuditNote, Principal};

/// A text in the user's language.
pub(crate) fn tr<'a>(l: Lang, zh: &'a str, en: &'a str) -> &'a str {
    if l == Lang::Zh { zh } else { en }
}

pub(crate) struct Shell {
    pub viewer: Principal,
    pub l: Lang,
    pub top: String,
    /// Department code → Chinese name.
    pub names: HashMap<String, String>,
}

pub(crate) async fn department_names(web: &Web) -> HashMap<String, String> {
    web.identity
        .departments()
        .await
        .map(|all| all.into_iter().map(|d| (d.code, d.name_zh)).collect())
        .unwrap_or_default()
}

/// The signed-in viewer with the page header (`active`: the nav entry lit), or the way to the
/// sign-in page.
pub(crate) async fn shell(web: &Web, headers: &HeaderMap, active: &str) -> Result<Shell, Response> {
    let Some(viewer) = web.viewer(headers).await else {
        return Err(Redirect::to("/ui/sign-in").into_response());
    };
    let l = lang(headers);
    let names = department_names(web).await;
    let department = names.get(&viewer.department).cloned().unwrap_or_default();
    let top = header(l, active, &viewer, &department);
    Ok(Shell {
        viewer,
        l,
        top,
        names,
    })
}

/// A hub's own navigation: its links, the one at `active` marked as the current page.
pub(crate) fn sub_nav(label: &str, links: &[(&str, &str)], active: &str) -> String {
    let items: String = links
        .iter()
        .map(|(href, text)| {
            format!(
                "<a href=\"{href}\"{}>{text}</a>",
                if *href == active {
                    " aria-current=\"page\" class=\"active\""
                } else {
                    ""
                }
            )
        })
        .collect();
    format!("<nav class=\"subnav\" aria-label=\"{label}\">{items}</nav>")
}

pub(crate) fn note(viewer: &Principal, action: &str, target: String) -> AuditNote {
    AuditNote {
        action: Some(action.to_owned()),
        target: Some(target),
        actor: Some(viewer.name.clone()),
        department: Some(viewer.department.clone()),
        ..AuditNote::default()
    }
}

/// A form's answer: back to `back` when it worked, the refusal page when not; audited either way.
pub(crate) fn answered<T>(
    viewer: &Principal,
    l: Lang,
    action: &str,
    target: String,
    back: &str,
    result: Result<T, Problem>,
) -> Response {
    let n = note(viewer, action, target);
    match result {
        Ok(_) => (Extension(n), Redirect::to(back)).into_response(),
        Err(p) => (Extension(n), crate::refusal(l, &p, back)).into_response(),
    }
}
