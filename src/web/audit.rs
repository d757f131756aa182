//! The Audit log page (workspace admins): the same rows, filters and pages as
//! `GET /api/v1/workspaces/{ws}/audit`, as a table, newest first, with an "Older" link.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::Session;
use super::pages::{layout, seg, when};
use crate::api::audit::{AuditEntryOut, AuditList, AuditQuery};
use crate::api::extract::ApiQuery;
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::{AuditAction, WorkspaceAccess};

pub(super) async fn audit_page(
    State(state): State<AppState>,
    session: Session,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let ws = crate::api::auth::workspace(&state, &session.caller, &ws).await?;
    let list = crate::api::audit::audit_page(&state, &ws, &q).await?;
    let workspaces = state.store.workspaces_of(session.caller.user_id).await?;
    Ok(page(&session, &workspaces, &ws, &q, &list).into_response())
}

/// The query string of this page with `cursor` (and the current filters).
fn query_string(q: &AuditQuery, cursor: Option<&str>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    if let Some(a) = q.action.as_deref().filter(|a| !a.is_empty()) {
        s.append_pair("action", a);
    }
    if let Some(m) = q.model.as_deref().filter(|m| !m.is_empty()) {
        s.append_pair("model", m);
    }
    if let Some(l) = q.limit.as_deref() {
        s.append_pair("limit", l);
    }
    if let Some(c) = cursor {
        s.append_pair("cursor", c);
    }
    let text = s.finish();
    if text.is_empty() {
        text
    } else {
        format!("?{text}")
    }
}

/// True for a value that says nothing: null or an empty list.
fn blank(v: &serde_json::Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

/// A value of the details object, for a person: strings as they are, lists joined, a
/// `{from, to}` pair as an arrow, other objects as `key value` parts without the blank ones.
fn show(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(", "),
        Value::Object(map) => match (map.len(), map.get("from"), map.get("to")) {
            (2, Some(from), Some(to)) => format!("{} → {}", show(from), show(to)),
            _ => map
                .iter()
                .filter(|(_, v)| !blank(v))
                .map(|(k, v)| format!("{k} {}", show(v)))
                .collect::<Vec<_>>()
                .join(" / "),
        },
        other => other.to_string(),
    }
}

fn target(e: &AuditEntryOut) -> Markup {
    let t = &e.target;
    html! {
        @if let Some(m) = &t.model { strong { (m) } }
        @if let Some(v) = &t.version { " " (v) }
        @if let Some(n) = &t.webhook_name { " · webhook " em { (n) } }
        @if t.model.is_none() && t.version.is_none() && t.webhook_name.is_none() {
            @if let Some(u) = e.details.get("username").and_then(|u| u.as_str()) { "member " strong { (u) } }
            @else { span.muted { "—" } }
        }
    }
}

fn details(v: &serde_json::Value) -> Markup {
    html! {
        @match v.as_object() {
            Some(map) if !map.is_empty() => {
                @for (i, (k, val)) in map.iter().enumerate() {
                    @if i > 0 { "; " }
                    span.muted { (k) ": " } (show(val))
                }
            }
            _ => { span.muted { "—" } }
        }
    }
}

fn page(
    session: &Session,
    workspaces: &[WorkspaceAccess],
    ws: &WorkspaceAccess,
    q: &AuditQuery,
    list: &AuditList,
) -> Markup {
    let base = format!("/w/{}/audit", seg(&ws.name));
    let action = q.action.as_deref().unwrap_or("");
    layout(
        "Audit log",
        Some(session),
        workspaces,
        Some(&ws.name),
        html! {
            nav.crumbs { a href={"/w/" (seg(&ws.name))} { "Model Registry" } " / " span { "Audit log" } }
            div.page-head { h1 { "Audit log" } }
            p.muted { "Who changed what in this workspace, newest first. Secrets, signing keys, header values and tokens are never recorded." }
            form.toolbar #audit-filter method="get" action=(base) {
                label for="audit-action" { "Action" }
                select #audit-action name="action" {
                    option value="" selected[action.is_empty()] { "All actions" }
                    @for a in AuditAction::ALL {
                        option value=(a.as_str()) selected[action == a.as_str()] { (a.as_str()) }
                    }
                }
                label for="audit-model" { "Model" }
                input #audit-model name="model" type="search" maxlength="100" value=(q.model.as_deref().unwrap_or("")) placeholder="any model";
                button.small type="submit" { "Filter" }
            }
            div.table-wrap {
                table #audit {
                    thead { tr { th { "Time" } th { "Who" } th { "Action" } th { "Target" } th { "Details" } } }
                    tbody {
                        @for e in &list.items {
                            tr data-audit=(e.id) {
                                td { time datetime=(e.at) { (when_rfc3339(&e.at)) } }
                                td { @if e.actor == crate::store::SYSTEM_ACTOR { span.pill { "system" } } @else { (e.actor) } }
                                td { code { (e.action) } }
                                td { (target(e)) }
                                td { (details(&e.details)) }
                            }
                        }
                    }
                }
                @if list.items.is_empty() { p.muted.empty { "Nothing recorded yet." } }
            }
            div.toolbar {
                @if q.cursor.is_some() {
                    a #audit-newest href={(base) (query_string(q, None))} { "← Newest" }
                }
                span.spacer {}
                @if let Some(c) = &list.next_cursor {
                    a #audit-older href={(base) (query_string(q, Some(c)))} { "Older →" }
                }
            }
        },
    )
}

/// An RFC 3339 time as the other pages show times.
fn when_rfc3339(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| when(t.timestamp_micros()))
        .unwrap_or_else(|_| at.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_keep_filters_and_encode() {
        let q = AuditQuery {
            action: Some("webhook.updated".into()),
            model: Some("a&b".into()),
            ..AuditQuery::default()
        };
        assert_eq!(
            query_string(&q, Some("xyz")),
            "?action=webhook.updated&model=a%26b&cursor=xyz"
        );
        assert_eq!(query_string(&AuditQuery::default(), None), "");
    }

    #[test]
    fn details_read_as_text() {
        let v = serde_json::json!({
            "changed": ["url", "headers"],
            "headers": {"added": [], "changed": ["X-Team"], "removed": []},
            "triggers": {"from": ["A"], "to": ["A", "B"]},
            "secret": "set",
            "n": 3,
        });
        let text = details(&v).into_string();
        assert!(text.contains("url, headers"), "{text}");
        assert!(text.contains("headers: </span>changed X-Team;"), "{text}");
        assert!(text.contains("A → A, B"), "{text}");
        assert!(text.contains("set"), "{text}");
    }
}
