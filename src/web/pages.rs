//! The pages, as maud templates: layout, sign-in, Model Registry, model page (Versions and
//! Webhooks tabs, the webhook modal), and a webhook's deliveries with their hourly chart.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Session;
use crate::domain::EventTrigger;
use crate::store::{
    Caller, DeliveryRecord, Model, StatusDef, StatusRequest, Version, WebhookRecord,
    WorkspaceAccess,
};

pub enum Tab {
    Versions,
    Webhooks,
}

pub enum TabData {
    Versions {
        versions: Vec<Version>,
        statuses: Vec<StatusDef>,
        pending: Vec<StatusRequest>,
    },
    Webhooks {
        webhooks: Vec<WebhookRecord>,
    },
}

/// Percent-encodes a path segment (names are `[A-Za-z0-9._-]`, ids are uuids, but be safe).
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(super) fn when(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// JSON for a `<script type="application/json">` block (no `</script>` can close it early).
fn json_script(v: &serde_json::Value) -> PreEscaped<String> {
    PreEscaped(
        v.to_string()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026"),
    )
}

pub(super) fn layout(
    title: &str,
    session: Option<&Session>,
    workspaces: &[WorkspaceAccess],
    current_ws: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = session { meta name="csrf-token" content=(s.csrf); }
                title { (title) " · Berth" }
                link rel="icon" href="/favicon.ico" type="image/svg+xml";
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.topbar {
                    a.brand href="/" { "⚓ Berth" }
                    @if let Some(s) = session {
                        @if !workspaces.is_empty() {
                            label.ws-switch {
                                span.sr-only { "Workspace" }
                                select #ws-switch aria-label="Workspace" {
                                    @for w in workspaces {
                                        option value=(w.name) selected[Some(w.name.as_str()) == current_ws] { (w.name) }
                                    }
                                }
                            }
                        }
                        span.spacer {}
                        span.user { (s.caller.username) @if s.caller.server_admin { " (server admin)" } }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button.link type="submit" #sign-out { "Sign out" }
                        }
                    }
                }
                main { (body) }
                div #toast role="status" aria-live="polite" {}
            }
        }
    }
}

pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        &[],
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in to Berth" }
                p.muted { "Paste an API token. The first one is printed when Berth starts and saved in "
                    code { "berth-data/admin-token" } "." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button.primary type="submit" #sign-in { "Sign in" }
                }
            }
        },
    )
}

pub fn no_workspace(caller: &Caller) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Berth" } link rel="stylesheet" href="/static/app.css"; }
            body { main { section.card.narrow {
                h1 { "Welcome, " (caller.username) }
                p { "You are not a member of any workspace yet. Ask a workspace admin to add you." }
            } } }
        }
    }
}

pub fn registry(
    session: &Session,
    workspaces: &[WorkspaceAccess],
    ws: &WorkspaceAccess,
    models: &[Model],
    filter: Option<&str>,
) -> Markup {
    layout(
        "Model Registry",
        Some(session),
        workspaces,
        Some(&ws.name),
        html! {
            div.page-head {
                h1 { "Model Registry" }
                span.spacer {}
                @if ws.role == crate::domain::Role::Admin {
                    a #audit-link href={"/w/" (seg(&ws.name)) "/audit"} { "Audit log" }
                }
                button.primary #create-model-open type="button" { "Create model" }
            }
            form.card #create-model-form hidden data-ws=(ws.name) {
                h2 { "Create model" }
                div.field {
                    label for="model-name" { "Name" }
                    input #model-name name="name" required maxlength="100" placeholder="fraud-detector";
                    div.field-error data-for="name" {}
                }
                div.field {
                    label for="model-description" { "Description" }
                    input #model-description name="description" maxlength="5000";
                    div.field-error data-for="description" {}
                }
                div.actions {
                    button type="button" data-close="create-model-form" { "Cancel" }
                    button.primary type="submit" { "Create" }
                }
            }
            div.toolbar {
                label for="model-filter" { "Filter by name" }
                input #model-filter type="search" value=(filter.unwrap_or("")) placeholder="Type to filter";
            }
            div.table-wrap {
                table #models {
                    thead { tr { th { "Model" } th { "Latest version" } th { "Status" } th { "Tags" } } }
                    tbody {
                        @for m in models {
                            tr data-name=(m.name) {
                                td { a href={"/w/" (seg(&ws.name)) "/m/" (seg(&m.name))} { (m.name) } }
                                @match &m.latest {
                                    Some((v, status, tags)) => {
                                        td { (v) }
                                        td { @if let Some(s) = status { span.pill { (s) } } @else { span.muted { "—" } } }
                                        td { @for t in tags { span.tag { (t) } } }
                                    }
                                    None => { td.muted { "no versions" } td {} td {} }
                                }
                            }
                        }
                    }
                }
                @if models.is_empty() { p.muted.empty { "No models yet. Create one to start." } }
            }
        },
    )
}

pub fn model(
    session: &Session,
    workspaces: &[WorkspaceAccess],
    ws: &WorkspaceAccess,
    m: &Model,
    tab: Tab,
    data: &TabData,
) -> Markup {
    let base = format!("/w/{}/m/{}", seg(&ws.name), seg(&m.name));
    let admin = ws.role == crate::domain::Role::Admin;
    layout(
        &m.name,
        Some(session),
        workspaces,
        Some(&ws.name),
        html! {
            nav.crumbs { a href={"/w/" (seg(&ws.name))} { "Model Registry" } " / " span { (m.name) } }
            div.page-head {
                h1 { (m.name) }
                @if !m.description.is_empty() { p.muted { (m.description) } }
            }
            div #model-root data-ws=(ws.name) data-model=(m.name) data-admin=(admin) {}
            nav.tabs role="tablist" {
                a role="tab" href=(base) aria-selected=(matches!(tab, Tab::Versions)) #tab-versions { "Versions" }
                a role="tab" href={(base) "?tab=webhooks"} aria-selected=(matches!(tab, Tab::Webhooks)) #tab-webhooks { "Webhooks" }
            }
            @match data {
                TabData::Versions { versions, statuses, pending } => (versions_tab(versions, statuses, pending, admin)),
                TabData::Webhooks { webhooks } => (webhooks_tab(&base, webhooks, admin)),
            }
        },
    )
}

fn versions_tab(
    versions: &[Version],
    statuses: &[StatusDef],
    pending: &[StatusRequest],
    admin: bool,
) -> Markup {
    html! {
        section role="tabpanel" aria-labelledby="tab-versions" {
            form.card.row-form #add-version-form {
                div.field { label for="v-version" { "Version" } input #v-version name="version" placeholder="1.0.0" required; div.field-error data-for="version" {} }
                div.field { label for="v-tags" { "Tags (comma-separated)" } input #v-tags name="tags" placeholder="prod-candidate, nlp"; div.field-error data-for="tags" {} }
                div.field { label for="v-exp" { "Source experiment key" } input #v-exp name="sourceExperimentKey"; div.field-error data-for="sourceExperimentKey" {} }
                button.primary type="submit" { "Add version" }
            }
            @if !pending.is_empty() {
                div.card #pending-requests {
                    h2 { "Pending status requests" }
                    ul.plain {
                        @for r in pending {
                            li data-request=(r.id) {
                                strong { (r.version) } " → " span.pill { (r.status) }
                                " requested by " (r.requested_by)
                                @if let Some(c) = &r.comment { span.muted { " — " (c) } }
                                @if admin {
                                    " "
                                    button.small.primary type="button" data-approve=(r.id) { "Approve" }
                                    button.small type="button" data-reject=(r.id) { "Reject" }
                                }
                            }
                        }
                    }
                }
            }
            div.table-wrap {
                table #versions {
                    thead { tr { th { "Version" } th { "Status" } th { "Tags" } th { "Created" } th { "Source experiment" } } }
                    tbody {
                        @for v in versions {
                            tr data-version=(v.version) {
                                td { strong { (v.version) } }
                                td {
                                    select.status-select aria-label={"Status of " (v.version)} data-version=(v.version) {
                                        option value="" selected[v.status.is_none()] { "— none —" }
                                        @for s in statuses {
                                            option value=(s.name) selected[v.status.as_deref() == Some(s.name.as_str())] {
                                                (s.name) @if s.review_required && !admin { " (needs review)" }
                                            }
                                        }
                                    }
                                }
                                td.tags {
                                    @for t in &v.tags {
                                        span.tag { (t) button.tag-x type="button" aria-label={"Remove tag " (t)} data-remove-tag=(t) data-version=(v.version) { "×" } }
                                    }
                                    form.tag-add data-version=(v.version) {
                                        input name="tag" aria-label={"Add a tag to " (v.version)} placeholder="+ tag" maxlength="100";
                                    }
                                }
                                td { time { (when(v.created_at)) } }
                                td { @if let Some(k) = &v.source_experiment_key { code { (k) } } @else { span.muted { "—" } } }
                            }
                        }
                    }
                }
                @if versions.is_empty() { p.muted.empty { "No versions yet." } }
            }
        }
    }
}

fn webhook_json(w: &WebhookRecord) -> serde_json::Value {
    serde_json::json!({
        "id": w.id,
        "name": w.name,
        "url": w.url.as_str(),
        "hasSecret": w.secret_enc.is_some(),
        "triggers": w.triggers,
        "headers": w.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "githubActions": w.github_actions,
        "enabled": w.enabled,
        "disabledByBerth": disabled_by_berth(w),
    })
}

/// Disabled by Berth (410 Gone, or every delivery failing), not by a user: shown with a
/// banner, and re-enabled with what it missed.
fn disabled_by_berth(w: &WebhookRecord) -> bool {
    !w.enabled && w.disabled_reason.as_deref() != Some("disabled by a user")
}

fn webhooks_tab(base: &str, webhooks: &[WebhookRecord], admin: bool) -> Markup {
    let data = serde_json::Value::Array(webhooks.iter().map(webhook_json).collect());
    let disabled: Vec<&WebhookRecord> = webhooks.iter().filter(|w| disabled_by_berth(w)).collect();
    html! {
        section role="tabpanel" aria-labelledby="tab-webhooks" {
            @for w in &disabled {
                div.banner.warn role="alert" {
                    strong { "Webhook “" (w.name) "” is disabled." }
                    " " (w.disabled_reason.as_deref().unwrap_or("")) " "
                    @if admin { button.small type="button" data-enable=(w.id) { "Re-enable and send what it missed" } }
                }
            }
            div.page-head {
                h2 { "Webhooks" }
                span.spacer {}
                @if admin { button.primary #create-webhook type="button" { "Create Webhook" } }
            }
            script #webhooks-data type="application/json" { (json_script(&data)) }
            div.table-wrap {
                table #webhooks {
                    thead { tr { th { "Name" } th { "URL" } th { "Triggers" } th { "Enabled" } th { "Last delivery" } th { "Test" } th { span.sr-only { "Actions" } } } }
                    tbody {
                        @for w in webhooks {
                            tr data-webhook=(w.id) {
                                td { strong { (w.name) } @if w.github_actions { " " span.pill.gh { "GitHub Actions" } } }
                                td.url { code { (w.url) } }
                                td { @for t in &w.triggers { span.tag.small { (t) } } }
                                td {
                                    @if w.enabled { span.pill.ok { "enabled" } } @else { span.pill.bad { "disabled" } }
                                    @if disabled_by_berth(w) {
                                        div.muted.small.disabled-reason { (w.disabled_reason.as_deref().unwrap_or("")) }
                                        @if admin { button.small type="button" data-enable=(w.id) aria-label={"Re-enable " (w.name) " and send what it missed"} { "Re-enable" } }
                                    }
                                }
                                td {
                                    @match &w.last_delivery {
                                        Some((state, code)) => {
                                            span class={"pill state-" (state)} { (state) }
                                            @if let Some(c) = code { " " span.muted { (c) } }
                                        }
                                        None => { span.muted { "none yet" } }
                                    }
                                }
                                td.test-cell { span.test-result {} }
                                td.menu-cell {
                                    div.menu {
                                        button.kebab type="button" aria-haspopup="menu" aria-expanded="false" aria-label={"Actions for " (w.name)} { "⋮" }
                                        div.menu-items role="menu" hidden {
                                            @if admin {
                                                button role="menuitem" type="button" data-action="edit" { "Edit" }
                                                button role="menuitem" type="button" data-action="test" { "Test" }
                                            }
                                            a role="menuitem" href={(base) "/webhooks/" (seg(&w.id)) "/deliveries"} data-action="deliveries" { "Deliveries" }
                                            @if admin {
                                                button role="menuitem" type="button" data-action="toggle" { @if w.enabled { "Disable" } @else { "Enable" } }
                                                button.danger role="menuitem" type="button" data-action="delete" { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if webhooks.is_empty() { p.muted.empty { "No webhooks yet. Create one to be told when versions, tags or statuses change." } }
            }
            (webhook_modal())
        }
    }
}

fn webhook_modal() -> Markup {
    html! {
        div.modal-backdrop #webhook-modal hidden {
            div.modal role="dialog" aria-modal="true" aria-labelledby="webhook-modal-title" {
                form #webhook-form novalidate {
                    h2 #webhook-modal-title { "Create Webhook" }
                    div.field {
                        label for="wh-name" { "Webhook name" }
                        input #wh-name name="name" required maxlength="100";
                        div.field-error data-for="name" {}
                    }
                    div.field {
                        label for="wh-url" { "URL" }
                        input #wh-url name="url" type="url" required placeholder="https://example.com/hooks/berth";
                        div.hint #gh-url-hint hidden { "GitHub Actions: use " code { "https://api.github.com/repos/OWNER/REPO/dispatches" } }
                        div.field-error data-for="url" {}
                    }
                    div.field {
                        label #secret-label for="wh-secret" { "Secret (optional)" }
                        input #wh-secret name="secret" type="password" autocomplete="new-password" aria-describedby="secret-hint";
                        div.hint #secret-hint aria-live="polite" { "Sent as the Authorization header." }
                        label.check #remove-secret-row hidden { input #wh-remove-secret type="checkbox"; " Remove secret" }
                        div.field-error data-for="secret" {}
                    }
                    fieldset.field {
                        legend { "Trigger events" }
                        @for t in EventTrigger::SUBSCRIBABLE {
                            label.check { input type="checkbox" name="triggers" value=(t.as_str()); " " (t.as_str()) }
                        }
                        div.field-error data-for="triggers" {}
                    }
                    fieldset.field {
                        legend { "Headers (optional)" }
                        div #header-rows {}
                        button.small type="button" #add-header { "+ Add header" }
                        div.field-error data-for="headers" {}
                    }
                    div.field {
                        label.check.switch { input #wh-github type="checkbox" name="githubActions"; " GitHub Actions Integration" }
                        div #gh-help hidden {
                            p.hint { "The payload is sent as a " code { "repository_dispatch" } " event; the secret is your GitHub token. Add this to a workflow:" }
                            pre #gh-snippet {}
                            button.small type="button" #copy-snippet { "Copy workflow snippet" }
                        }
                    }
                    div.form-error role="alert" {}
                    div.actions {
                        button type="button" #wh-test { "Test Webhook" }
                        span.test-result #modal-test-result {}
                        span.spacer {}
                        button type="button" #wh-cancel { "Cancel" }
                        button.primary type="submit" #wh-save { "Save" }
                    }
                }
            }
        }
    }
}

/// Successes and failures per hour over the last 24 hours, oldest first.
pub fn hourly(outcomes: &[(i64, bool)], now: i64) -> Vec<(u32, u32)> {
    const HOUR: i64 = 3600 * 1_000_000;
    let mut buckets = vec![(0u32, 0u32); 24];
    for (at, ok) in outcomes {
        let age = now - at;
        if !(0..24 * HOUR).contains(&age) {
            continue;
        }
        let i = 23 - usize::try_from(age / HOUR).unwrap_or(0).min(23);
        if *ok {
            buckets[i].0 += 1;
        } else {
            buckets[i].1 += 1;
        }
    }
    buckets
}

/// A stacked bar chart of [`hourly`] buckets, as inline SVG.
fn chart(buckets: &[(u32, u32)]) -> Markup {
    let max = buckets.iter().map(|(a, b)| a + b).max().unwrap_or(0).max(1);
    let (w, h, bar) = (480.0_f64, 120.0_f64, 20.0_f64);
    let total_ok: u32 = buckets.iter().map(|b| b.0).sum();
    let total_bad: u32 = buckets.iter().map(|b| b.1).sum();
    html! {
        figure.chart {
            svg #delivery-chart viewBox={"0 0 " (w) " " (h + 20.0)} role="img"
                aria-label={"Attempts per hour over the last 24 hours: " (total_ok) " succeeded, " (total_bad) " failed"} {
                line x1="0" y1=(h) x2=(w) y2=(h) stroke="#99a" stroke-width="1" {}
                @for (i, (ok, bad)) in buckets.iter().enumerate() {
                    @let x = i as f64 * bar + 2.0;
                    @let ok_h = f64::from(*ok) / f64::from(max) * (h - 4.0);
                    @let bad_h = f64::from(*bad) / f64::from(max) * (h - 4.0);
                    g {
                        title { (23 - i) "h ago: " (ok) " succeeded, " (bad) " failed" }
                        rect.ok x=(x) y=(h - ok_h) width=(bar - 4.0) height=(ok_h) {}
                        rect.bad x=(x) y=(h - ok_h - bad_h) width=(bar - 4.0) height=(bad_h) {}
                    }
                }
                text x="0" y=(h + 15.0) font-size="10" { "24 h ago" }
                text x=(w) y=(h + 15.0) font-size="10" text-anchor="end" { "now" }
            }
            figcaption {
                span.legend.ok { "■" } " " (total_ok) " succeeded  "
                span.legend.bad { "■" } " " (total_bad) " failed (attempts, last 24 h)"
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn deliveries(
    session: &Session,
    workspaces: &[WorkspaceAccess],
    ws: &WorkspaceAccess,
    m: &Model,
    hook: &WebhookRecord,
    list: &[DeliveryRecord],
    buckets: &[(u32, u32)],
    filter: Option<&str>,
) -> Markup {
    let model_base = format!("/w/{}/m/{}", seg(&ws.name), seg(&m.name));
    let page = format!("{model_base}/webhooks/{}/deliveries", seg(&hook.id));
    let admin = ws.role == crate::domain::Role::Admin;
    layout(
        "Deliveries",
        Some(session),
        workspaces,
        Some(&ws.name),
        html! {
            nav.crumbs {
                a href={"/w/" (seg(&ws.name))} { "Model Registry" } " / "
                a href=(model_base) { (m.name) } " / "
                a href={(model_base) "?tab=webhooks"} { "Webhooks" } " / " span { (hook.name) }
            }
            div.page-head { h1 { "Deliveries of “" (hook.name) "”" } }
            div #deliveries-root data-ws=(ws.name) data-model=(m.name) data-webhook=(hook.id) data-admin=(admin) {}
            (chart(buckets))
            div.toolbar {
                span { "Show: " }
                @for (label, value) in [("All", None), ("Pending", Some("pending")), ("Succeeded", Some("succeeded")), ("Failed", Some("failed"))] {
                    @let href = match value { Some(v) => format!("{page}?state={v}"), None => page.clone() };
                    a.filter href=(href) aria-current=[(filter == value).then_some("page")] { (label) }
                }
                @if admin {
                    span.spacer {}
                    form #replay-form.inline {
                        label for="replay-since" { "Replay failed since " }
                        input #replay-since type="datetime-local" required;
                        button.small type="submit" { "Replay" }
                    }
                }
            }
            div.table-wrap {
                table #deliveries {
                    thead { tr { th { "Created" } th { "Event" } th { "State" } th { "Attempts" } th { "Last status" } th { "Next attempt" } } }
                    tbody {
                        @for d in list {
                            tr.delivery class={"state-" (d.state)} data-delivery=(d.id) tabindex="0" {
                                td { (when(d.created_at)) }
                                td { code { (d.event_trigger) } }
                                td { span class={"pill state-" (d.state)} { (d.state) } }
                                td { (d.attempt_count) }
                                td { @if let Some(c) = d.last_status_code { (c) } @else { span.muted { "—" } } }
                                td { @if d.state == crate::domain::DeliveryState::Pending { @if let Some(t) = d.next_attempt_at { (when(t)) } } }
                            }
                        }
                    }
                }
                @if list.is_empty() { p.muted.empty { "No deliveries yet." } }
            }
            section.card #delivery-detail hidden aria-live="polite" {}
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_buckets_place_attempts_by_age() {
        let now = 100 * 3600 * 1_000_000;
        let h = 3600 * 1_000_000;
        let b = hourly(
            &[
                (now - 10, true),
                (now - h - 10, false),
                (now - 30 * h, true),
            ],
            now,
        );
        assert_eq!(b.len(), 24);
        assert_eq!(b[23], (1, 0));
        assert_eq!(b[22], (0, 1));
        assert_eq!(b.iter().map(|x| x.0 + x.1).sum::<u32>(), 2);
    }

    #[test]
    fn json_in_script_cannot_close_the_tag() {
        let v = serde_json::json!({"name": "</script><script>alert(1)</script>"});
        let out = json_script(&v).0;
        assert!(!out.contains("</script>"));
    }
}
