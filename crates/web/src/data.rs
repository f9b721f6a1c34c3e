//! 数据中枢 pages: the catalogue with search and facets; a dataset's page (its schema with
//! levels and personal information, versions and quality, usage, and a preview read exactly
//! as the viewer may: masked by its grant, or refused with the reason and a request form);
//! the request and approval workbench; the capability marketplace; monitoring and the ranking
//! of departments. Every action goes through the hub's own calls, as the API does.

use crate::shell::{Shell, answered, shell, tr};
use crate::text::Lang;
use crate::{Web, escape, page};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::HashMap;
use yunnao_core::Problem;
use yunnao_data::search::{Filter, Query as SearchQuery, Sort};
use yunnao_http::ApiPath;

fn sub_nav(l: Lang, active: &str) -> String {
    crate::shell::sub_nav(
        tr(l, "数据中枢", "Data hub"),
        &[
            ("/ui/data", tr(l, "数据目录", "Catalogue")),
            ("/ui/data/requests", tr(l, "共享申请与审批", "Requests")),
            ("/ui/data/market", tr(l, "能力服务超市", "Marketplace")),
            ("/ui/data/monitoring", tr(l, "共享监测与评价", "Monitoring")),
        ],
        active,
    )
}

fn sharing_name(l: Lang, sharing: &str) -> &'static str {
    match sharing {
        "open" => tr(l, "开放", "open"),
        "conditional" => tr(l, "有条件共享", "conditional"),
        _ => tr(l, "不予共享", "not shared"),
    }
}

fn level_name(l: Lang, level: &str) -> &'static str {
    match level {
        "core" => tr(l, "核心数据", "core"),
        "important" => tr(l, "重要数据", "important"),
        _ => tr(l, "一般数据", "general"),
    }
}

fn personal_name(l: Lang, personal: &str) -> &'static str {
    match personal {
        "sensitive" => tr(l, "敏感个人信息", "sensitive personal"),
        "personal" => tr(l, "个人信息", "personal"),
        _ => "—",
    }
}

fn status_name(l: Lang, status: &str) -> &'static str {
    match status {
        "pending" => tr(l, "待审批", "pending"),
        "approved" => tr(l, "已批准", "approved"),
        "refused" => tr(l, "已拒绝", "refused"),
        "revoked" => tr(l, "已撤销", "revoked"),
        "expired" => tr(l, "已到期", "expired"),
        _ => "—",
    }
}

fn rule_name(l: Lang, rule: &str) -> &'static str {
    match rule {
        "keep" => tr(l, "原样", "keep"),
        "mask" => tr(l, "掩码", "mask"),
        "generalise" => tr(l, "泛化", "generalise"),
        "hash" => tr(l, "哈希", "hash"),
        _ => tr(l, "去除", "drop"),
    }
}

fn facet_label(l: Lang, facet: &str) -> &'static str {
    match facet {
        "department" => tr(l, "部门", "Department"),
        "theme" => tr(l, "主题", "Theme"),
        "sharing" => tr(l, "共享类型", "Sharing"),
        "level" => tr(l, "分级", "Level"),
        "frequency" => tr(l, "更新频率", "Frequency"),
        _ => tr(l, "关键词", "Keyword"),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct CatalogueQuery {
    q: Option<String>,
    department: Option<String>,
    theme: Option<String>,
    sharing: Option<String>,
    level: Option<String>,
}

/// 数据目录: search in Chinese or English, facets to narrow.
#[utoipa::path(get, path = "/ui/data", tag = "ui", params(CatalogueQuery),
    responses((status = 200, description = "the catalogue"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn catalogue(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(query): Query<CatalogueQuery>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "data").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut filters = Vec::new();
    for (field, value) in [
        ("department", &query.department),
        ("theme", &query.theme),
        ("sharing", &query.sharing),
        ("level", &query.level),
    ] {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            filters.push(Filter {
                field: field.into(),
                value: value.clone(),
            });
        }
    }
    let text = query
        .q
        .clone()
        .filter(|q| !q.trim().is_empty())
        .map(|q| q.chars().take(200).collect::<String>());
    let found = web.data.search(
        Some(&viewer),
        &SearchQuery {
            text: text.clone(),
            filters,
            sort: Sort::Relevance,
            start: 0,
            rows: 100,
        },
    );
    let link_with = |facet: &str, value: &str| {
        let mut parts = Vec::new();
        if let Some(q) = &text {
            parts.push(format!("q={}", urlencode(q)));
        }
        for (f, v) in [
            ("department", &query.department),
            ("theme", &query.theme),
            ("sharing", &query.sharing),
            ("level", &query.level),
        ] {
            if f != facet
                && let Some(v) = v.as_ref().filter(|v| !v.is_empty())
            {
                parts.push(format!("{f}={}", urlencode(v)));
            }
        }
        parts.push(format!("{facet}={}", urlencode(value)));
        format!("/ui/data?{}", parts.join("&"))
    };
    let facets: String = ["theme", "department", "sharing", "level"]
        .iter()
        .filter_map(|facet| found.facets.get(facet).map(|values| (facet, values)))
        .map(|(facet, values)| {
            let items: String = values
                .iter()
                .take(12)
                .map(|(value, n)| {
                    let shown = match *facet {
                        "department" => names.get(value).cloned().unwrap_or_else(|| value.clone()),
                        "sharing" => sharing_name(l, value).to_owned(),
                        "level" => level_name(l, value).to_owned(),
                        _ => value.clone(),
                    };
                    format!(
                        "<li><a href=\"{}\">{}</a> <span class=\"num\">{n}</span></li>",
                        escape(&link_with(facet, value)),
                        escape(&shown)
                    )
                })
                .collect();
            format!(
                "<section class=\"facet\"><h3>{}</h3><ul>{items}</ul></section>",
                facet_label(l, facet)
            )
        })
        .collect();
    let rows: String = found
        .results
        .iter()
        .map(|(entry, _)| {
            let d = &entry.dataset;
            let version = web.data.current_version(&d.id);
            format!(
                "<tr><td><a href=\"/ui/data/datasets/{id}\">{title}</a><br><small>{desc}</small></td><td>{dept}</td><td>{themes}</td><td><span class=\"tag {sharing}\">{sharing_name}</span></td><td>{level}</td><td class=\"num\">{rows}</td><td>{updated}</td></tr>",
                id = escape(&d.id),
                title = escape(tr(l, &d.title_zh, &d.title_en)),
                desc = escape(&tr(l, &d.description_zh, &d.description_en).chars().take(60).collect::<String>()),
                dept = escape(names.get(&d.department).map_or(&d.department, |n| n)),
                themes = escape(&d.themes.join("、")),
                sharing = escape(&d.sharing),
                sharing_name = sharing_name(l, &d.sharing),
                level = level_name(l, &d.level),
                rows = version.as_ref().map_or("—".to_owned(), |v| v.rows.to_string()),
                updated = crate::names::local_time(Some(&entry.modified_at)),
            )
        })
        .collect();
    let body = format!(
        "{top}<main id=\"main\">{nav}<h1>{title}</h1>\
         <form class=\"search-box\" method=\"get\" action=\"/ui/data\" role=\"search\"><label>{search} <input name=\"q\" value=\"{q}\" maxlength=\"200\"></label> <button>{go}</button></form>\
         <p>{count_label} <b>{count}</b> · <a href=\"/api/v1/data/catalog.ttl\">DCAT-AP (Turtle)</a> · <a href=\"/api/v1/data/catalog.jsonld\">JSON-LD</a> · <a href=\"/api/3/action/package_list\">CKAN API</a></p>\
         <div class=\"catalogue\"><aside>{facets}</aside><table><thead><tr><th>{h_title}</th><th>{h_dept}</th><th>{h_theme}</th><th>{h_sharing}</th><th>{h_level}</th><th>{h_rows}</th><th>{h_updated}</th></tr></thead><tbody>{rows}</tbody></table></div></main>",
        nav = sub_nav(l, "/ui/data"),
        title = tr(l, "数据目录", "Data catalogue"),
        search = tr(l, "检索", "Search"),
        go = tr(l, "搜索", "Search"),
        q = escape(text.as_deref().unwrap_or("")),
        count_label = tr(l, "数据集", "Datasets"),
        count = found.count,
        h_title = tr(l, "名称", "Title"),
        h_dept = tr(l, "提供部门", "Department"),
        h_theme = tr(l, "主题", "Themes"),
        h_sharing = tr(l, "共享类型", "Sharing"),
        h_level = tr(l, "分级", "Level"),
        h_rows = tr(l, "数据量(行)", "Rows"),
        h_updated = tr(l, "更新时间", "Updated"),
    );
    page(l, tr(l, "数据目录", "Data catalogue"), &body).into_response()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A dataset: schema with levels, versions and quality, usage, a preview as the viewer may see it.
#[utoipa::path(get, path = "/ui/data/datasets/{id}", tag = "ui", params(("id" = String, Path)),
    responses((status = 200, description = "the dataset"), (status = 303, description = "to the sign-in page"), (status = 404)))]
pub(crate) async fn dataset(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "data").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let entry = match web.data.get(Some(&viewer), &id) {
        Ok(e) => e,
        Err(problem) => return crate::refusal(l, &problem, "/ui/data"),
    };
    let d = &entry.dataset;
    let schema: String = d
        .fields
        .iter()
        .map(|f| {
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.name),
                escape(&f.description_zh),
                escape(&f.field_type),
                escape(f.unit.as_deref().unwrap_or("—")),
                level_name(l, &f.level),
                personal_name(l, &f.personal),
            )
        })
        .collect();
    let versions = web.data.versions(&id).await.unwrap_or_default();
    let version_rows: String = versions
        .iter()
        .map(|v| {
            format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{} / {}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{:.1}%</td><td class=\"num\">{:.1}%</td><td>{}</td></tr>",
                v.version,
                crate::names::local_time(Some(&v.imported_at)),
                v.rows,
                escape(&v.format),
                escape(&v.encoding),
                v.quality.completeness * 100.0,
                v.quality.validity * 100.0,
                v.quality.uniqueness * 100.0,
                escape(&v.imported_by),
            )
        })
        .collect();
    // A live view has no versions: its rows are read from the source at each request.
    let versions_table = if d.source.is_live() {
        format!(
            "<p>{}</p>",
            tr(
                l,
                "实时视图:每次读取时即时查询数据源,不导入、无版本。",
                "A live view: its source is queried at each read; nothing is imported, there are no versions."
            )
        )
    } else {
        format!(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{version_rows}</tbody></table>",
            tr(l, "版本", "Version"),
            tr(l, "导入时间", "Imported"),
            tr(l, "行数", "Rows"),
            tr(l, "格式/编码", "Format/encoding"),
            tr(l, "完整性", "Completeness"),
            tr(l, "有效性", "Validity"),
            tr(l, "唯一性", "Uniqueness"),
            tr(l, "导入人", "By"),
        )
    };
    let request_id = yunnao_http::RequestId::from_headers(&headers);
    let read = web
        .data
        .read(
            Some(&viewer),
            &request_id.0,
            &id,
            &yunnao_data::table::ReadQuery {
                limit: 10,
                include_total: true,
                ..Default::default()
            },
        )
        .await;
    let preview = match read {
        Ok(rows) => {
            let heads: String = rows
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "<th>{}<br><small>{}</small></th>",
                        escape(&f.name),
                        rule_name(l, &f.masking)
                    )
                })
                .collect();
            let body: String = rows
                .records
                .iter()
                .map(|r| {
                    let cells: String = rows
                        .fields
                        .iter()
                        .map(|f| {
                            let v = r.get(&f.name).cloned().unwrap_or_default();
                            let text = match v {
                                serde_json::Value::String(s) => s,
                                serde_json::Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            format!("<td>{}</td>", escape(&text))
                        })
                        .collect();
                    format!("<tr>{cells}</tr>")
                })
                .collect();
            let how = match rows.access.as_str() {
                "owner" => tr(
                    l,
                    "本部门数据, 明文显示",
                    "your department's data, in the clear",
                )
                .to_owned(),
                "open" => tr(l, "开放数据", "open data").to_owned(),
                _ => format!(
                    "{} <code>{}</code>",
                    tr(
                        l,
                        "按批准的共享申请, 字段、行与脱敏以批准为准",
                        "through the approved request: its fields, rows and masking"
                    ),
                    escape(rows.grant.as_deref().unwrap_or(""))
                ),
            };
            format!(
                "<p>{how} · {total_label} {total}</p><div class=\"scroll\"><table><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table></div>",
                total_label = tr(l, "共", "rows:"),
                total = rows.total.unwrap_or(0)
            )
        }
        Err(problem) => {
            let form = if d.sharing == "conditional" && viewer.department != d.department {
                let fields: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
                let until = chrono::Utc::now() + chrono::Duration::days(180);
                format!(
                    "<h3>{h}</h3><form method=\"post\" action=\"/ui/data/requests\" class=\"stack\">\
                     <input type=\"hidden\" name=\"dataset\" value=\"{id}\">\
                     <label>{purpose} <input name=\"purpose\" required maxlength=\"500\"></label>\
                     <label>{basis} <input name=\"legal_basis\" required maxlength=\"500\"></label>\
                     <label>{fields_label} <input name=\"fields\" value=\"{fields}\" required></label>\
                     <label>{filter_label} <input name=\"row_filter\" placeholder='{{\"district\": \"市南区\"}}'></label>\
                     <label>{until_label} <input type=\"date\" name=\"valid_until\" value=\"{until}\" required></label>\
                     <label>{rows_label} <input type=\"number\" name=\"expected_rows\" value=\"1000\" min=\"0\"></label>\
                     <button>{submit}</button></form>",
                    h = tr(l, "申请共享", "Request access"),
                    id = escape(&d.id),
                    purpose = tr(l, "用途", "Purpose"),
                    basis = tr(l, "法律依据", "Legal basis"),
                    fields_label = tr(l, "字段(逗号分隔)", "Fields (comma-separated)"),
                    fields = escape(&fields.join(",")),
                    filter_label = tr(l, "行范围(JSON, 可空)", "Rows (JSON, optional)"),
                    until_label = tr(l, "有效期至", "Valid until"),
                    until = until.format("%Y-%m-%d"),
                    rows_label = tr(l, "预计数据量(行)", "Expected rows"),
                    submit = tr(l, "提交申请", "Submit"),
                )
            } else {
                String::new()
            };
            format!(
                "<p class=\"refused\" role=\"status\">{} {}</p>{form}",
                tr(l, "不可查看数据:", "Not readable:"),
                escape(problem.detail.as_deref().unwrap_or(&problem.title))
            )
        }
    };
    let figures = web
        .data
        .monitoring(Some(&viewer), 30)
        .await
        .ok()
        .and_then(|m| m.datasets.into_iter().find(|f| f.dataset == id));
    let usage = figures
        .map(|f| {
            format!(
                "<dl class=\"facts\"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{} / {} / {}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>",
                tr(l, "近30日读取", "Reads (30 days)"),
                f.reads,
                tr(l, "提供行数", "Rows served"),
                f.rows_served,
                tr(l, "申请 / 批准 / 拒绝", "Requests / approved / refused"),
                f.requests,
                f.approved,
                f.refused,
                tr(l, "时效", "Freshness"),
                match f.freshness.as_str() {
                    "fresh" => tr(l, "按时更新", "fresh"),
                    "stale" => tr(l, "已过期未更新", "stale"),
                    "no-data" => tr(l, "无数据", "no data"),
                    "live" => tr(l, "实时", "live"),
                    _ => tr(l, "不定期", "no deadline"),
                },
                tr(l, "使用部门", "Consumers"),
                escape(&f.consumers.iter().map(|c| names.get(c).cloned().unwrap_or_else(|| c.clone())).collect::<Vec<_>>().join("、")),
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{top}<main id=\"main\">{nav}<h1>{title}</h1><p>{desc}</p>\
         <dl class=\"facts\"><dt>{l_dept}</dt><dd>{dept}</dd><dt>{l_sharing}</dt><dd>{sharing}</dd><dt>{l_level}</dt><dd>{level}</dd><dt>{l_freq}</dt><dd>{freq}</dd><dt>{l_source}</dt><dd>{source}</dd><dt>{l_resource}</dt><dd>{resource}</dd><dt>{l_licence}</dt><dd>{licence}</dd></dl>\
         <h2>{h_schema}</h2><table><thead><tr><th>{h_field}</th><th>{h_desc}</th><th>{h_type}</th><th>{h_unit}</th><th>{h_level}</th><th>{h_personal}</th></tr></thead><tbody>{schema}</tbody></table>\
         <h2>{h_preview}</h2>{preview}\
         <h2>{h_versions}</h2>{versions_table}\
         <h2>{h_usage}</h2>{usage}</main>",
        nav = sub_nav(l, "/ui/data"),
        title = escape(tr(l, &d.title_zh, &d.title_en)),
        desc = escape(tr(l, &d.description_zh, &d.description_en)),
        l_dept = tr(l, "提供部门", "Department"),
        dept = escape(names.get(&d.department).map_or(&d.department, |n| n)),
        l_sharing = tr(l, "共享类型", "Sharing"),
        sharing = sharing_name(l, &d.sharing),
        l_level = tr(l, "分级 (GB/T 43697-2024)", "Level (GB/T 43697-2024)"),
        level = level_name(l, &d.level),
        l_freq = tr(l, "更新频率", "Frequency"),
        freq = escape(&d.frequency),
        l_source = tr(l, "来源系统", "Source system"),
        source = escape(&d.source_system),
        l_resource = tr(l, "资源形式", "Resource"),
        resource = resource_name(l, &d.source),
        l_licence = tr(l, "许可", "Licence"),
        licence = escape(&d.licence),
        h_schema = tr(l, "数据项", "Schema"),
        h_field = tr(l, "字段", "Field"),
        h_desc = tr(l, "说明", "Description"),
        h_type = tr(l, "类型", "Type"),
        h_unit = tr(l, "单位", "Unit"),
        h_level = tr(l, "分级", "Level"),
        h_personal = tr(l, "个人信息", "Personal information"),
        h_preview = tr(l, "数据预览", "Preview"),
        h_versions = tr(l, "版本与质量", "Versions and quality"),
        h_usage = tr(l, "使用情况", "Usage"),
    );
    page(l, tr(l, &d.title_zh, &d.title_en), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RequestForm {
    dataset: String,
    purpose: String,
    legal_basis: String,
    /// Comma-separated.
    fields: String,
    row_filter: Option<String>,
    /// `YYYY-MM-DD`.
    valid_until: String,
    expected_rows: Option<i64>,
}

fn json_object(text: Option<&str>) -> Result<serde_json::Map<String, serde_json::Value>, Problem> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(serde_json::Map::new()),
        Some(t) => match serde_json::from_str(t) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(Problem::validation(
                "the rows are a JSON object, e.g. {\"district\": \"市南区\"}",
            )),
        },
    }
}

fn end_of_day(date: &str) -> String {
    if date.len() == 10 {
        format!("{date}T15:59:59Z")
    } else {
        date.to_owned()
    }
}

#[utoipa::path(post, path = "/ui/data/requests", tag = "ui",
    request_body(content = RequestForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "to the workbench"), (status = 400), (status = 403), (status = 404), (status = 422)))]
pub(crate) async fn file_request(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<RequestForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = crate::lang(&headers);
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("fill in the request"), "/ui/data");
    };
    let back = format!("/ui/data/datasets/{}", form.dataset);
    let result = match json_object(form.row_filter.as_deref()) {
        Ok(row_filter) => {
            web.data
                .file_request(
                    &viewer,
                    yunnao_data::sharing::NewRequest {
                        dataset: form.dataset.clone(),
                        purpose: form.purpose,
                        legal_basis: form.legal_basis,
                        fields: form
                            .fields
                            .split(',')
                            .map(|f| f.trim().to_owned())
                            .filter(|f| !f.is_empty())
                            .collect(),
                        row_filter,
                        valid_from: None,
                        // The end of the chosen day in Qingdao (UTC+8).
                        valid_until: end_of_day(&form.valid_until),
                        expected_rows: form.expected_rows.unwrap_or(0),
                    },
                )
                .await
        }
        Err(p) => Err(p),
    };
    match result {
        Ok(request) => answered(
            &viewer,
            l,
            "data.request.file",
            format!("request:{} dataset:{}", request.id, request.dataset),
            "/ui/data/requests",
            Ok(()),
        ),
        Err(p) => answered::<()>(
            &viewer,
            l,
            "data.request.file",
            format!("dataset:{}", form.dataset),
            &back,
            Err(p),
        ),
    }
}

/// 共享申请与审批: requests received (to decide) and filed (to follow or withdraw).
#[utoipa::path(get, path = "/ui/data/requests", tag = "ui",
    responses((status = 200, description = "the workbench"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn requests(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "data").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let all = match web.data.requests(&viewer, None).await {
        Ok(all) => all,
        Err(problem) => return crate::refusal(l, &problem, "/ui/data"),
    };
    let name = |code: &str| names.get(code).cloned().unwrap_or_else(|| code.to_owned());
    let title_of = |id: &str| {
        web.data
            .get(Some(&viewer), id)
            .map(|e| e.dataset.title_zh)
            .unwrap_or_else(|_| id.to_owned())
    };
    let row = |r: &yunnao_data::sharing::Request, received: bool| {
        let decide = if received && r.status == "pending" {
            let defaults: Vec<String> = web
                .data
                .get(Some(&viewer), &r.dataset)
                .map(|e| {
                    e.dataset
                        .fields
                        .iter()
                        .filter(|f| r.fields.contains(&f.name))
                        .map(|f| {
                            format!(
                                "{}={}",
                                f.name,
                                if f.personal == "none" { "keep" } else { "mask" }
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "<form method=\"post\" action=\"/ui/data/requests/{id}/decision\" class=\"stack\">\
                 <label>{masking} <input name=\"masking\" value=\"{defaults}\"></label>\
                 <label>{rows} <input name=\"row_filter\" value=\"{filter}\"></label>\
                 <label>{reason} <input name=\"reason\" maxlength=\"500\"></label>\
                 <button name=\"decision\" value=\"approve\">{approve}</button> <button name=\"decision\" value=\"refuse\">{refuse}</button></form>",
                id = escape(&r.id),
                masking = tr(
                    l,
                    "脱敏(字段=原样/掩码/泛化/哈希/去除)",
                    "Masking (field=keep/mask/generalise/hash/drop)"
                ),
                defaults = escape(&defaults.join(", ")),
                rows = tr(l, "行范围(可收窄)", "Rows (may narrow)"),
                filter = escape(&serde_json::Value::Object(r.row_filter.clone()).to_string()),
                reason = tr(l, "理由(拒绝或收窄时必填)", "Reason (to refuse or narrow)"),
                approve = tr(l, "批准", "Approve"),
                refuse = tr(l, "拒绝", "Refuse"),
            )
        } else if matches!(r.status.as_str(), "pending" | "approved") {
            format!(
                "<form method=\"post\" action=\"/ui/data/requests/{id}/revoke\"><label>{reason} <input name=\"reason\" required maxlength=\"500\"></label> <button>{revoke}</button></form>",
                id = escape(&r.id),
                reason = tr(l, "理由", "Reason"),
                revoke = if r.status == "pending" {
                    tr(l, "撤回", "Withdraw")
                } else {
                    tr(l, "撤销授权", "Revoke")
                },
            )
        } else {
            escape(r.reason.as_deref().unwrap_or("—"))
        };
        let masking = r
            .masking
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|(f, rule)| format!("{f}:{}", rule_name(l, rule.as_str().unwrap_or(""))))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        format!(
            "<tr><td><a href=\"/ui/data/datasets/{ds}\">{title}</a></td><td>{who}</td><td>{purpose}<br><small>{basis}</small></td><td><small>{fields}</small><br><small>{masking}</small></td><td>{until}</td><td><span class=\"tag {status}\">{status_name}</span></td><td>{decide}</td></tr>",
            ds = escape(&r.dataset),
            title = escape(&title_of(&r.dataset)),
            who = escape(&name(if received { &r.consumer } else { &r.owner })),
            purpose = escape(&r.purpose),
            basis = escape(&r.legal_basis),
            fields = escape(&r.granted_fields.as_ref().unwrap_or(&r.fields).join(", ")),
            until = crate::names::local_time(Some(
                r.granted_until.as_deref().unwrap_or(&r.valid_until)
            )),
            status = escape(&r.status),
            status_name = status_name(l, &r.status),
        )
    };
    let received: String = all
        .iter()
        .filter(|r| {
            r.owner == viewer.department
                || (viewer.is_platform_admin() && r.consumer != viewer.department)
        })
        .map(|r| row(r, r.owner == viewer.department))
        .collect();
    let filed: String = all
        .iter()
        .filter(|r| r.consumer == viewer.department)
        .map(|r| row(r, false))
        .collect();
    let heads = |who: &str| {
        format!(
            "<thead><tr><th>{}</th><th>{who}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead>",
            tr(l, "数据集", "Dataset"),
            tr(l, "用途与依据", "Purpose, basis"),
            tr(l, "字段与脱敏", "Fields, masking"),
            tr(l, "有效期至", "Until"),
            tr(l, "状态", "Status"),
        )
    };
    let body = format!(
        "{top}<main id=\"main\">{nav}<h1>{title}</h1>\
         <h2>{h_received}</h2><table>{heads_received}<tbody>{received}</tbody></table>\
         <h2>{h_filed}</h2><table>{heads_filed}<tbody>{filed}</tbody></table></main>",
        nav = sub_nav(l, "/ui/data/requests"),
        title = tr(l, "共享申请与审批", "Requests and approvals"),
        h_received = tr(l, "收到的申请(本部门数据)", "Received (our data)"),
        h_filed = tr(l, "提交的申请", "Filed by us"),
        heads_received = heads(tr(l, "申请部门", "Consumer")),
        heads_filed = heads(tr(l, "提供部门", "Owner")),
    );
    page(l, tr(l, "共享申请与审批", "Requests"), &body).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DecisionForm {
    decision: String,
    /// `field=rule, …`.
    masking: Option<String>,
    row_filter: Option<String>,
    reason: Option<String>,
}

#[utoipa::path(post, path = "/ui/data/requests/{id}/decision", tag = "ui", params(("id" = String, Path)),
    request_body(content = DecisionForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the workbench"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn decide(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    form: Result<axum::extract::Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = crate::lang(&headers);
    let back = "/ui/data/requests";
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("approve or refuse"), back);
    };
    let mut masking = serde_json::Map::new();
    for pair in form.masking.as_deref().unwrap_or("").split(',') {
        if let Some((field, rule)) = pair.split_once('=') {
            masking.insert(
                field.trim().to_owned(),
                serde_json::Value::from(rule.trim()),
            );
        }
    }
    let result = match json_object(form.row_filter.as_deref()) {
        Ok(filter) => {
            web.data
                .decide(
                    &viewer,
                    &id,
                    yunnao_data::sharing::Decision {
                        decision: form.decision.clone(),
                        reason: form.reason.filter(|r| !r.trim().is_empty()),
                        fields: None,
                        row_filter: (form.decision == "approve").then_some(filter),
                        valid_until: None,
                        masking: (form.decision == "approve").then_some(masking),
                    },
                )
                .await
        }
        Err(p) => Err(p),
    };
    answered(
        &viewer,
        l,
        &format!("data.request.{}", form.decision),
        format!("request:{id}"),
        back,
        result,
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RevokeForm {
    reason: String,
}

#[utoipa::path(post, path = "/ui/data/requests/{id}/revoke", tag = "ui", params(("id" = String, Path)),
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "back to the workbench"), (status = 400), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub(crate) async fn revoke(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    form: Result<axum::extract::Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(viewer) = web.viewer(&headers).await else {
        return Redirect::to("/ui/sign-in").into_response();
    };
    let l = crate::lang(&headers);
    let back = "/ui/data/requests";
    let Ok(axum::extract::Form(form)) = form else {
        return crate::refusal(l, &Problem::bad_request("say why"), back);
    };
    let result = web
        .data
        .revoke(
            &viewer,
            &id,
            yunnao_data::sharing::Revocation {
                reason: form.reason,
            },
        )
        .await;
    answered(
        &viewer,
        l,
        "data.request.revoke",
        format!("request:{id}"),
        back,
        result,
    )
}

/// 一体化应用能力服务超市: capabilities, and the department's apps' subscriptions.
#[utoipa::path(get, path = "/ui/data/market", tag = "ui",
    responses((status = 200, description = "the marketplace"), (status = 303, description = "to the sign-in page")))]
pub(crate) async fn market(State(web): State<Web>, headers: HeaderMap) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "data").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let capabilities = web
        .data
        .capabilities(Some(&viewer))
        .await
        .unwrap_or_default();
    let rows: String = capabilities
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                escape(tr(l, &c.title_zh, &c.title_en)),
                escape(&c.description_zh),
                if c.kind == "platform" {
                    tr(l, "平台能力", "platform").to_owned()
                } else {
                    escape(names.get(&c.department).map_or(&c.department, |n| n))
                },
                escape(&c.endpoint),
                c.rate_per_minute,
                c.subscribers,
            )
        })
        .collect();
    let subscriptions = web.data.subscriptions(&viewer).await.unwrap_or_default();
    let sub_rows: String = subscriptions
        .iter()
        .map(|s| {
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&s.client_id),
                escape(names.get(&s.department).map_or(&s.department, |n| n)),
                escape(&s.target_kind),
                escape(&s.target),
                s.calls,
                if s.status == "live" { tr(l, "有效", "live") } else { tr(l, "已取消", "cancelled") },
            )
        })
        .collect();
    let apps = web.data.live_scenario_apps().await.unwrap_or(0);
    let body = format!(
        "{top}<main id=\"main\">{nav}<h1>{title}</h1><p>{apps_label} <b>{apps}</b> ({target})</p>\
         <table><thead><tr><th>{h_name}</th><th>{h_desc}</th><th>{h_by}</th><th>{h_endpoint}</th><th>{h_rate}</th><th>{h_subs}</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>{h_mine}</h2><table><thead><tr><th>{h_app}</th><th>{h_dept}</th><th>{h_kind}</th><th>{h_target}</th><th>{h_calls}</th><th>{h_status}</th></tr></thead><tbody>{sub_rows}</tbody></table></main>",
        nav = sub_nav(l, "/ui/data/market"),
        title = tr(l, "一体化应用能力服务超市", "Capability marketplace"),
        apps_label = tr(
            l,
            "有有效订阅的场景应用",
            "Scenario apps with a live subscription"
        ),
        target = tr(
            l,
            "规划目标: 新接入场景不少于50个",
            "plan target: at least 50 new scenarios"
        ),
        h_name = tr(l, "能力", "Capability"),
        h_desc = tr(l, "说明", "Description"),
        h_by = tr(l, "提供方", "Provider"),
        h_endpoint = tr(l, "接口", "Endpoint"),
        h_rate = tr(l, "每分钟限额", "Per minute"),
        h_subs = tr(l, "订阅数", "Subscribers"),
        h_mine = tr(l, "订阅", "Subscriptions"),
        h_app = tr(l, "场景应用", "App"),
        h_dept = tr(l, "部门", "Department"),
        h_kind = tr(l, "类型", "Kind"),
        h_target = tr(l, "订阅对象", "Target"),
        h_calls = tr(l, "调用次数", "Calls"),
        h_status = tr(l, "状态", "Status"),
    );
    page(l, tr(l, "能力服务超市", "Marketplace"), &body).into_response()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct MonitoringQuery {
    days: Option<i64>,
}

/// 共享监测与效能评价: datasets' figures, departments ranked, staleness alerts.
#[utoipa::path(get, path = "/ui/data/monitoring", tag = "ui", params(MonitoringQuery),
    responses((status = 200, description = "monitoring"), (status = 303, description = "to the sign-in page"), (status = 500)))]
pub(crate) async fn monitoring(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(query): Query<MonitoringQuery>,
) -> Response {
    let Shell {
        viewer,
        l,
        top,
        names,
    } = match shell(&web, &headers, "data").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let m = match web
        .data
        .monitoring(Some(&viewer), query.days.unwrap_or(30))
        .await
    {
        Ok(m) => m,
        Err(problem) => return crate::refusal(l, &problem, "/ui/data"),
    };
    let pct = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let rows: String = m
        .datasets
        .iter()
        .map(|f| {
            format!(
                "<tr><td><a href=\"/ui/data/datasets/{id}\">{title}</a></td><td>{dept}</td><td class=\"num\">{rows}</td><td><span class=\"tag {fresh}\">{fresh_name}</span></td><td class=\"num\">{c}</td><td class=\"num\">{v}</td><td class=\"num\">{u}</td><td class=\"num\">{t}</td><td class=\"num\">{req}</td><td class=\"num\">{hours}</td><td class=\"num\">{reads}</td><td class=\"num\">{denied}</td><td class=\"num\">{served}</td></tr>",
                id = escape(&f.dataset),
                title = escape(&f.title_zh),
                dept = escape(names.get(&f.department).map_or(&f.department, |n| n)),
                rows = f.rows,
                fresh = escape(&f.freshness),
                fresh_name = match f.freshness.as_str() {
                    "fresh" => tr(l, "及时", "fresh"),
                    "stale" => tr(l, "过期", "stale"),
                    "no-data" => tr(l, "无数据", "no data"),
                    "live" => tr(l, "实时", "live"),
                    _ => tr(l, "不定期", "irregular"),
                },
                c = pct(f.completeness),
                v = pct(f.validity),
                u = pct(f.uniqueness),
                t = pct(f.timeliness),
                req = f.requests,
                hours = f.mean_decision_hours.map_or("—".to_owned(), |h| format!("{h:.1}")),
                reads = f.reads,
                denied = f.denied_reads,
                served = f.rows_served,
            )
        })
        .collect();
    let ranking: String = m
        .departments
        .iter()
        .map(|d| {
            format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                d.rank,
                escape(&d.name_zh),
                d.datasets,
                d.rows_supplied,
                d.reads_supplied,
                d.reads_used,
                d.requests_filed,
                d.score
            )
        })
        .collect();
    let alerts: String = if m.alerts.is_empty() {
        format!("<p>{}</p>", tr(l, "无过期告警", "No staleness alerts"))
    } else {
        let items: String = m
            .alerts
            .iter()
            .map(|a| {
                format!(
                    "<li>{} · {}</li>",
                    escape(&a.detail),
                    crate::names::local_time(Some(&a.raised_at))
                )
            })
            .collect();
        format!("<ul class=\"alerts\">{items}</ul>")
    };
    let totals: HashMap<&str, i64> = m.totals.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let body = format!(
        "{top}<main id=\"main\">{nav}<h1>{title}</h1>\
         <p>{l_days} {days} · {l_reads} <b>{reads}</b> · {l_denied} <b>{denied}</b> · {l_served} <b>{served}</b></p>\
         <h2>{h_alerts}</h2>{alerts}\
         <h2>{h_rank}</h2><table><thead><tr><th>{h_no}</th><th>{h_dept}</th><th>{h_sets}</th><th>{h_rows}</th><th>{h_supplied}</th><th>{h_used}</th><th>{h_filed}</th><th>{h_score}</th></tr></thead><tbody>{ranking}</tbody></table>\
         <h2>{h_sets2}</h2><div class=\"scroll\"><table><thead><tr><th>{h_set}</th><th>{h_dept}</th><th>{h_rows}</th><th>{h_fresh}</th><th>{h_c}</th><th>{h_v}</th><th>{h_u}</th><th>{h_t}</th><th>{h_req}</th><th>{h_hours}</th><th>{h_reads}</th><th>{h_denied}</th><th>{h_served}</th></tr></thead><tbody>{rows}</tbody></table></div></main>",
        nav = sub_nav(l, "/ui/data/monitoring"),
        title = tr(
            l,
            "共享应用监测与效能评价",
            "Sharing monitoring and evaluation"
        ),
        l_days = tr(l, "统计天数", "Days"),
        days = m.days,
        l_reads = tr(l, "读取", "Reads"),
        reads = totals.get("reads").copied().unwrap_or(0),
        l_denied = tr(l, "拒绝", "Denied"),
        denied = totals.get("denied_reads").copied().unwrap_or(0),
        l_served = tr(l, "提供行数", "Rows served"),
        served = totals.get("rows_served").copied().unwrap_or(0),
        h_alerts = tr(l, "时效告警", "Staleness alerts"),
        h_rank = tr(
            l,
            "部门排名(数据供给与使用)",
            "Departments ranked by data supplied and used"
        ),
        h_no = tr(l, "名次", "Rank"),
        h_dept = tr(l, "部门", "Department"),
        h_sets = tr(l, "数据集", "Datasets"),
        h_rows = tr(l, "数据量(行)", "Rows"),
        h_supplied = tr(l, "被使用次数", "Reads supplied"),
        h_used = tr(l, "使用他部门次数", "Reads used"),
        h_filed = tr(l, "提交申请", "Requests filed"),
        h_score = tr(l, "得分", "Score"),
        h_sets2 = tr(l, "数据集监测", "Datasets"),
        h_set = tr(l, "数据集", "Dataset"),
        h_fresh = tr(l, "时效", "Freshness"),
        h_c = tr(l, "完整性", "Completeness"),
        h_v = tr(l, "有效性", "Validity"),
        h_u = tr(l, "唯一性", "Uniqueness"),
        h_t = tr(l, "及时性", "Timeliness"),
        h_req = tr(l, "申请", "Requests"),
        h_hours = tr(l, "平均审批(小时)", "Mean decision (h)"),
        h_reads = tr(l, "读取", "Reads"),
        h_denied = tr(l, "拒绝", "Denied"),
        h_served = tr(l, "提供行数", "Rows served"),
    );
    page(l, tr(l, "共享监测", "Monitoring"), &body).into_response()
}

/// How a dataset's rows are held, for its page.
fn resource_name(l: Lang, source: &yunnao_data::live::Source) -> String {
    use yunnao_data::live::Source;
    match source {
        Source::Table => tr(
            l,
            "导入数据表(按版本保留)",
            "Imported table (versions kept)",
        )
        .to_owned(),
        Source::Entities { entity_type } => format!(
            "{}: {}",
            tr(
                l,
                "实时视图 · 城市信息模型实体",
                "Live view · city information model entities"
            ),
            escape(entity_type)
        ),
        Source::Series { profile } => format!(
            "{}: {}",
            tr(
                l,
                "实时视图 · 感知设备近24小时序列",
                "Live view · sensing series, last 24 hours"
            ),
            escape(profile)
        ),
        Source::Api { capability, path } => format!(
            "{}: {} {}",
            tr(
                l,
                "部门接口(服务超市登记)",
                "Department API (registered in the marketplace)"
            ),
            escape(capability),
            escape(path)
        ),
    }
}
